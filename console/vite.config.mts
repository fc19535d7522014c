import { defineConfig } from 'vite';

// The console is built into dist/console by `npm run build` and served by the service itself at
// /console (src/common/console.ts). Preact's JSX through Vite's own transform (oxc): no framework plugin is needed.
export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../dist/console',
    emptyOutDir: true,
    // One small page: no source maps shipped, no inline module-preload polyfill (the CSP allows no inline script).
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
});
