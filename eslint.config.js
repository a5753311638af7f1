// Lint rules: typescript-eslint's type-checked set, above all no-floating-promises and
// no-misused-promises, which matter most in NATS and gRPC code.
import eslint from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", ".data/**", "coverage/**", "**/*.d.ts"] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ["*.js", "*.ts", ".ci/*.js"],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["@eve-tasks/*/src/*", "@eve-tasks/*/dist/*"],
              message: "Import a package by its name only.",
            },
          ],
        },
      ],
    },
  },
  {
    // Only the task-executor talks to containerd (DESIGN: "containerd (the only one)").
    files: ["packages/**/*.ts", "services/**/*.ts"],
    ignores: [
      "packages/containerd/**",
      "packages/executor/src/**",
      "services/task-executor/src/**",
      "**/test/**",
    ],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            {
              name: "@eve-tasks/containerd",
              message:
                "Only the task-executor (packages/executor, services/task-executor) talks to containerd.",
            },
          ],
          patterns: [
            {
              group: ["@eve-tasks/*/src/*", "@eve-tasks/*/dist/*"],
              message: "Import a package by its name only.",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
  },
);
