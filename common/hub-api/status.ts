// Maps IsthmusError codes onto gRPC statuses (server side) and back (client side), carrying the
// Isthmus code in trailing metadata so a client can tell an expired token from an unknown one.
import * as grpc from '@grpc/grpc-js';
import { IsthmusError, type ErrorCode, type GrpcStatusName } from '../errors.ts';

const CODE_KEY = 'isthmus-code';

export function toServiceError(err: IsthmusError): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  metadata.set(CODE_KEY, err.code);
  return { code: grpc.status[err.grpc satisfies GrpcStatusName], details: err.message, metadata };
}

/** A failed hub call as the client sees it: the server's message, its Isthmus code, the gRPC status. */
export class HubCallError extends Error {
  readonly code: ErrorCode | undefined;
  readonly grpcCode: grpc.status;

  constructor(method: string, err: grpc.ServiceError) {
    super(err.details || err.message, { cause: err });
    this.name = 'HubCallError';
    this.grpcCode = err.code;
    const code = err.metadata?.get(CODE_KEY)[0];
    this.code = typeof code === 'string' ? (code as ErrorCode) : undefined;
    if (this.code === undefined) this.message = `${method}: ${grpc.status[err.code]}: ${this.message}`;
  }

  /** Worth trying again (perhaps on another hub replica). */
  get retryable(): boolean {
    return this.grpcCode === grpc.status.UNAVAILABLE || this.grpcCode === grpc.status.DEADLINE_EXCEEDED;
  }
}

export function isHubCallError(err: unknown, code?: ErrorCode): err is HubCallError {
  return err instanceof HubCallError && (code === undefined || err.code === code);
}

/** Server side: anything that is not an IsthmusError is an internal error with a generic message. */
export function asIsthmusError(err: unknown): IsthmusError | undefined {
  return err instanceof IsthmusError ? err : undefined;
}
