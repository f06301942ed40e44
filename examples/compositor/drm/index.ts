/** The example compositor's KMS backend (see backend.ts). */
export { DrmBackend, type DrmBackendOptions, type DrmBackendStats } from './backend.js';
export { ScanoutFeedback, TRANCHE_FLAG_SCANOUT } from './feedback.js';
export { describeKmsState, saveKmsState, restoreKmsState } from './kms-state.js';
export type { ModeRequest } from './select.js';
