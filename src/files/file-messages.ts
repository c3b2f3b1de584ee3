import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { FileSchema, FileStatus, type File as FileMessage } from '../../gen/yardmaster/v1/files_pb.ts';
import type { FileStatusName, StoredFile } from './entities.ts';

const statusOfName: Record<FileStatusName, FileStatus> = {
  uploading: FileStatus.UPLOADING,
  available: FileStatus.AVAILABLE,
  failed: FileStatus.FAILED,
};

export function fileToProto(file: StoredFile): FileMessage {
  return create(FileSchema, {
    id: file.id,
    ownerId: file.owner,
    directory: file.directory,
    name: file.name,
    size: BigInt(file.size),
    contentType: file.contentType,
    sha256: file.sha256 ?? '',
    status: statusOfName[file.status],
    createTime: timestampFromDate(file.createdAt),
    updateTime: timestampFromDate(file.updatedAt),
    jobId: file.job ?? '',
  });
}
