// The one public entry point of the Kubernetes plumbing every Isthmus controller shares.
export { apiClient, objectApiClient } from './clients.ts';
export {
  WorkQueue,
  WORK_QUEUE_DEFAULTS,
  type ShutDownOptions,
  type WorkHandler,
  type WorkQueueOptions,
  type WorkResult,
} from './work-queue.ts';
export {
  Informer,
  INFORMER_DEFAULTS,
  type InformerBackoff,
  type InformerEventType,
  type InformerHandler,
  type InformerOptions,
} from './informer.ts';
export {
  apiVersionOf,
  collectionPath,
  customResource,
  kinds,
  type CustomResourceDefinition,
  type ListOptions,
  type ResourceType,
} from './resources.ts';
export {
  LeaderElector,
  LEADER_ELECTION_DEFAULTS,
  type LeaderElectionOptions,
  type StopOptions,
} from './leader-election.ts';
export {
  describeKubeError,
  ensureNamespace,
  errorStatus,
  isAlreadyExists,
  isConflict,
  isNotFound,
  mergePatchCustomObject,
  mergePatchCustomObjectStatus,
  objectKey,
  serverSideApply,
  splitKey,
  statusCode,
  type ApplyOptions,
  type CustomObjectRef,
  type MergePatchOptions,
} from './objects.ts';
export { putConfigMap, putSecret } from './put.ts';
