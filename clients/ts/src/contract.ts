/**
 * The generated contract (services, messages, enums) the client is built on, so that
 * consumers use the same descriptors and types (e.g. `JobStatus`, `JobsService` for
 * connect-query) without generating code of their own.
 */
export * from '../../../gen/yardmaster/v1/access_pb.ts';
export * from '../../../gen/yardmaster/v1/admin_pb.ts';
export * from '../../../gen/yardmaster/v1/auth_pb.ts';
export * from '../../../gen/yardmaster/v1/common_pb.ts';
export * from '../../../gen/yardmaster/v1/files_pb.ts';
export * from '../../../gen/yardmaster/v1/job_types_pb.ts';
export * from '../../../gen/yardmaster/v1/jobs_pb.ts';
export * from '../../../gen/yardmaster/v1/queue_pb.ts';
export * from '../../../gen/yardmaster/v1/system_pb.ts';
export * from '../../../gen/yardmaster/v1/worker_pb.ts';
