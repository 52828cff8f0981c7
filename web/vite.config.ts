import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Built into the Python package, which serves it at /app; `vite` alone serves it on :5173
// against a gateway on :8000 (an origin the gateway allows in development).
export default defineConfig({
  base: "/app/",
  plugins: [react()],
  build: { outDir: "../gateway/static/app", emptyOutDir: true },
  server: {
    proxy: {
      "/graphql": { target: "http://127.0.0.1:8000", ws: true },
      "/invoices": "http://127.0.0.1:8000",
      "/app/dev-token": "http://127.0.0.1:8000",
    },
  },
});
