import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The bundle goes to ../dist, which the Go package embeds (go:embed); it is
// committed so that `go build` needs no Node. CI rebuilds it and fails when
// the committed bundle and the sources differ.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a broker's admin listener on the default port.
    proxy: { "/api": "http://127.0.0.1:9644" },
  },
});
