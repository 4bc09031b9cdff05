import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { auth } from './lib/auth'

// Every page is its own chunk (lazy import).
const routes: RouteRecordRaw[] = [
  { path: '/', redirect: () => (auth.session?.role === 'admin' ? '/admin/users' : '/me') },
  { path: '/sign-in', component: () => import('./pages/SignIn.vue'), meta: { public: true } },
  { path: '/callback', component: () => import('./pages/Callback.vue'), meta: { public: true } },
  { path: '/me', component: () => import('./pages/me/Dashboard.vue'), meta: { title: 'nav.dashboard' } },
  { path: '/me/credits', component: () => import('./pages/me/Credits.vue'), meta: { title: 'nav.credits' } },
  { path: '/me/redeem', component: () => import('./pages/me/Redeem.vue'), meta: { title: 'nav.redeem' } },
  {
    path: '/me/subscriptions',
    component: () => import('./pages/me/Subscriptions.vue'),
    meta: { title: 'nav.subscriptions' },
  },
  {
    path: '/admin/defaults',
    component: () => import('./pages/admin/Defaults.vue'),
    meta: { admin: true, title: 'nav.defaults' },
  },
  {
    path: '/admin/users/:userId?',
    component: () => import('./pages/admin/Users.vue'),
    meta: { admin: true, title: 'nav.users' },
  },
  { path: '/admin/codes', component: () => import('./pages/admin/Codes.vue'), meta: { admin: true, title: 'nav.codes' } },
  { path: '/admin/alerts', component: () => import('./pages/admin/Alerts.vue'), meta: { admin: true, title: 'nav.alerts' } },
  { path: '/admin/audit', component: () => import('./pages/admin/Audit.vue'), meta: { admin: true, title: 'nav.audit' } },
  { path: '/:rest(.*)*', redirect: '/' },
]

export const router = createRouter({ history: createWebHistory(), routes })

router.beforeEach((to) => {
  if (to.meta.public) return true
  if (!auth.session) return { path: '/sign-in', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if (to.meta.admin && auth.session.role !== 'admin') return '/me'
  return true
})
