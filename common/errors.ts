// Every error Isthmus raises on purpose has a code from this one table, so logs, metrics, gRPC
// statuses and CLI exit codes can be derived from the code rather than from message text.

/** gRPC status names the hub API maps error codes onto (kept as strings: no grpc import here). */
export type GrpcStatusName =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'INTERNAL';

interface ErrorSpec {
  readonly message: string;
  readonly grpc: GrpcStatusName;
}

const specs = {
  ISTHMUS_CONFIG_INVALID: { message: 'invalid configuration: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_INPUT_INVALID: { message: 'invalid input: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_BINARY_MISSING: { message: 'required binary not available: %s', grpc: 'INTERNAL' },
  ISTHMUS_PROCESS_FAILED: { message: 'process failed: %s', grpc: 'INTERNAL' },
  ISTHMUS_TIMEOUT: { message: 'timed out: %s', grpc: 'DEADLINE_EXCEEDED' },
  ISTHMUS_NETNS_UNAVAILABLE: { message: 'network namespaces unavailable: %s', grpc: 'FAILED_PRECONDITION' },
  ISTHMUS_KUBE_REQUEST_FAILED: { message: 'Kubernetes API request failed: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_STOPPED: { message: 'stopped before completion: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_NATS_READ_FAILED: { message: 'reading NATS failed: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_NATS_BUCKET_MISSING: { message: 'no such NATS bucket: %s', grpc: 'NOT_FOUND' },
  ISTHMUS_PKI_INVALID: { message: 'certificate or key is not usable: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_PKI_TRUST_DOMAIN_INVALID: { message: 'invalid trust domain: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_PKI_SPIFFE_ID_INVALID: { message: 'invalid SPIFFE ID: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_PKI_CSR_INVALID: { message: 'certificate signing request refused: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_PKI_IDENTITY_REFUSED: { message: 'identity outside this authority: %s', grpc: 'PERMISSION_DENIED' },
  ISTHMUS_PKI_BUNDLE_INVALID: { message: 'trust bundle invalid: %s', grpc: 'INVALID_ARGUMENT' },
  ISTHMUS_PKI_PEER_REFUSED: { message: 'peer refused: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_PKI_ROTATION_INVALID: { message: 'root rotation step not allowed: %s', grpc: 'FAILED_PRECONDITION' },
  // Registration (hub API). Each token refusal has its own code so `isthmus join` can say which.
  ISTHMUS_TOKEN_MALFORMED: { message: 'bootstrap token is malformed: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_TOKEN_UNKNOWN: { message: 'bootstrap token is unknown: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_TOKEN_EXPIRED: { message: 'bootstrap token has expired: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_TOKEN_EXHAUSTED: { message: 'bootstrap token has no uses left: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_TOKEN_REVOKED: { message: 'bootstrap token was revoked: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_CA_PIN_MISMATCH: { message: 'hub CA does not match the pin: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_CLUSTER_ID_TAKEN: { message: 'cluster id is already taken: %s', grpc: 'ALREADY_EXISTS' },
  ISTHMUS_CLUSTER_NOT_MEMBER: { message: 'cluster is not a member: %s', grpc: 'PERMISSION_DENIED' },
  ISTHMUS_MEMBERSHIP_SUPERSEDED: {
    message: 'certificate of an earlier membership of this cluster id: %s',
    grpc: 'PERMISSION_DENIED',
  },
  ISTHMUS_CLUSTER_NOT_ACCEPTED: { message: 'cluster is not accepted yet: %s', grpc: 'FAILED_PRECONDITION' },
  ISTHMUS_CLUSTER_NOT_FOUND: { message: 'no such cluster: %s', grpc: 'NOT_FOUND' },
  ISTHMUS_PEER_REFUSED: { message: 'peer certificate refused: %s', grpc: 'UNAUTHENTICATED' },
  ISTHMUS_NOT_LEADER: { message: 'this hub replica is a standby: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_HUB_UNAVAILABLE: { message: 'hub unavailable: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_JOIN_REFUSED: { message: 'join refused: %s', grpc: 'PERMISSION_DENIED' },
  ISTHMUS_STALE_REPORT: { message: 'stale export report: %s', grpc: 'FAILED_PRECONDITION' },
  // Hub hardening: a pending join is bound to the keys of its first request; load is bounded per peer.
  ISTHMUS_JOIN_KEYS_MISMATCH: {
    message: 'join refused: the pending join of this cluster id was made with other keys: %s',
    grpc: 'PERMISSION_DENIED',
  },
  ISTHMUS_RATE_LIMITED: { message: 'too many requests: %s', grpc: 'RESOURCE_EXHAUSTED' },
  ISTHMUS_MESSAGE_TOO_LARGE: { message: 'message too large: %s', grpc: 'RESOURCE_EXHAUSTED' },
  ISTHMUS_EXPORT_QUOTA_EXCEEDED: { message: 'export quota exceeded: %s', grpc: 'RESOURCE_EXHAUSTED' },
  ISTHMUS_CATALOG_ENTRY_TOO_LARGE: { message: 'catalog entry would be too large: %s', grpc: 'RESOURCE_EXHAUSTED' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof specs;

export class IsthmusError extends Error {
  readonly code: ErrorCode;
  readonly grpc: GrpcStatusName;

  constructor(code: ErrorCode, detail: string, options?: { cause?: unknown }) {
    super(specs[code].message.replace('%s', detail), options);
    this.name = 'IsthmusError';
    this.code = code;
    this.grpc = specs[code].grpc;
  }
}

export function isIsthmusError(err: unknown, code?: ErrorCode): err is IsthmusError {
  return err instanceof IsthmusError && (code === undefined || err.code === code);
}

/** Best-effort one-line description of anything thrown. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
