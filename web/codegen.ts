import type { CodegenConfig } from "@graphql-codegen/cli";

// The schema is the served one (`schema.schema.schema_sdl()`); a test keeps the two equal,
// so the app's types break at build time when the API changes.
const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["src/**/*.{ts,tsx}", "!src/gql/**"],
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        scalars: { BigInt: "string", DateTime: "string" },
      },
    },
  },
};

export default config;
