// FailoverPolicy distribution's public entry point: the hub runs a PolicyController per
// leadership term and feeds it membership changes and the agents' heartbeat reports.
export { POLICY_CONTROLLER_DEFAULTS, PolicyController, type PolicyControllerOptions } from './policy-controller.ts';
export { findRegionLoop, resolveServicePolicies, validatePolicySpec, type PolicyVerdict } from './validation.ts';
