export * from './messages.ts';
export { addHubService, HubClient, hubChannelCredentials, keepaliveServerOptions, type CallContext, type HubHandlers } from './service.ts';
export { HubCallError, isHubCallError } from './status.ts';
export { OptionalClientCertCredentials, type ServerIdentity } from './credentials.ts';
