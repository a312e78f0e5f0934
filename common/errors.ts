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
  ISTHMUS_KUBE_REQUEST_FAILED: { message: 'Kubernetes API request failed: %s', grpc: 'UNAVAILABLE' },
  ISTHMUS_PKI_INVALID: { message: 'certificate or key is not usable: %s', grpc: 'INVALID_ARGUMENT' },
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
