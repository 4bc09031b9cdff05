import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// `npm run dev` proxies the API to a running `make run` (SPENDGUARD_API, default :9000).
const api = process.env.SPENDGUARD_API ?? 'http://127.0.0.1:9000'

export default defineConfig({
  plugins: [vue()],
  define: {
    // vue-i18n: no legacy API, no devtools in the bundle.
    __VUE_I18N_FULL_INSTALL__: false,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
    __VUE_OPTIONS_API__: false,
    __VUE_PROD_DEVTOOLS__: false,
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: false,
  },
  build: {
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    proxy: {
      '/v1': api,
      '/local': api,
      '/config.json': api,
      '/2015-03-31': api,
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
})
