import { createApp } from 'vue'
import App from './App.vue'
import { router } from './router'
import { i18n } from './i18n'
import { loadConfig } from './lib/config'
import { setUnauthorizedHandler } from './lib/use'
import './styles.css'

document.documentElement.lang = i18n.global.locale.value
await loadConfig()
setUnauthorizedHandler(() => router.push({ path: '/sign-in', query: { expired: '1' } }))
createApp(App).use(i18n).use(router).mount('#app')
