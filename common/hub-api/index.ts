export * from './messages.ts';
export {
  addHubService,
  HubClient,
  hubChannelCredentials,
  keepaliveServerOptions,
  remoteAddress,
  type CallContext,
  type HubHandlers,
  type HubServerGuards,
} from './service.ts';
export { PeerLimiter, type Admission, type LimitPolicy } from './peer-limiter.ts';
export { HubCallError, isHubCallError } from './status.ts';
export { OptionalClientCertCredentials, type ServerIdentity } from './credentials.ts';
