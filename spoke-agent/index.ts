// The spoke agent's public entry point.
export { agentConfigSchema, type AgentConfig, AGENT_VERSION } from './config.ts';
export { startAgent, type RunningAgent, type MemberExtension } from './agent.ts';
export { AgentSecrets, type AgentCredentials, type Bootstrap } from './credentials.ts';
export { readAgentStatus, type AgentStatus } from './agent-status.ts';
export { discoverHubCa } from './hub-discovery.ts';
