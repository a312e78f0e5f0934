// The hub's public entry point.
export { hubConfigSchema, type HubConfig } from './config.ts';
export { startHub, type RunningHub } from './hub.ts';
export { readHubInfo, type HubInfo } from './hub-info.ts';
export { MemberClusterStore } from './members.ts';
export { TokenStore, type TokenRecord } from './tokens.ts';
export type { ExportsSink } from './hub-service.ts';
