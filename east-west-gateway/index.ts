// The one public entry point of the east-west gateway.
export { gatewayConfigSchema, type GatewayConfig } from './config.ts';
export { startGateway, type RunningGateway } from './gateway.ts';
export {
  DEFAULT_PICKER_POLICY,
  candidateOrder,
  levelOf,
  planTraffic,
  type Candidate,
  type Locality,
  type PickerPolicy,
  type TrafficPlan,
} from './picker.ts';
