import { createRegistry, toBinary, type DescFile, type DescService, type Registry } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import type { ServerReflection as ServerReflectionV1 } from '../../gen/grpc/reflection/v1/reflection_pb.ts';
import type { ServerReflection as ServerReflectionV1Alpha } from '../../gen/grpc/reflection/v1alpha/reflection_pb.ts';

const notFoundCode = 5;
const unimplementedCode = 12;

/** The request oneof, in the shape both protocol versions share. */
type ReflectionRequest =
  | { case: 'fileByFilename' | 'fileContainingSymbol' | 'allExtensionNumbersOfType' | 'listServices'; value: string }
  | { case: 'fileContainingExtension'; value: { containingType: string; extensionNumber: number } }
  | { case: undefined; value?: undefined };

/**
 * gRPC server reflection (grpc.reflection.v1 and the older v1alpha that many tools still
 * ask for), so that `buf curl` and grpcurl can call the server without local protos.
 */
export class ReflectionIndex {
  readonly #files = new Map<string, DescFile>();
  /** Each file serialized once: anonymous callers may ask for the same files without end. */
  readonly #serialized = new Map<DescFile, Uint8Array>();
  readonly #registry: Registry;
  readonly #serviceNames: string[];

  constructor(services: DescService[]) {
    const addFile = (file: DescFile) => {
      if (this.#files.has(file.name)) return;
      this.#files.set(file.name, file);
      file.dependencies.forEach(addFile);
    };
    for (const service of services) addFile(service.file);
    this.#registry = createRegistry(...this.#files.values());
    this.#serviceNames = services.map((service) => service.typeName).sort();
  }

  get serviceNames(): string[] {
    return this.#serviceNames;
  }

  /** The answer to one request, in the shape both protocol versions share. */
  answer(request: ReflectionRequest) {
    switch (request.case) {
      case 'listServices':
        return { case: 'listServicesResponse' as const, value: { service: this.#serviceNames.map((name) => ({ name })) } };
      case 'fileByFilename':
        return this.#filesAnswer(this.#files.get(request.value), `file "${request.value}" not found`);
      case 'fileContainingSymbol':
        return this.#filesAnswer(this.#fileOfSymbol(request.value), `symbol "${request.value}" not found`);
      case 'fileContainingExtension': {
        const extension = this.#extensionsOf(request.value.containingType).find((ext) => ext.number === request.value.extensionNumber);
        return this.#filesAnswer(
          extension?.file,
          `extension ${request.value.extensionNumber} of "${request.value.containingType}" not found`,
        );
      }
      case 'allExtensionNumbersOfType':
        if (!this.#registry.getMessage(request.value)) return errorAnswer(notFoundCode, `type "${request.value}" not found`);
        return {
          case: 'allExtensionNumbersResponse' as const,
          value: { baseTypeName: request.value, extensionNumber: this.#extensionsOf(request.value).map((ext) => ext.number) },
        };
      default:
        return errorAnswer(unimplementedCode, 'unsupported reflection request');
    }
  }

  #fileOfSymbol(symbol: string): DescFile | undefined {
    const found = this.#registry.get(symbol);
    if (found) return found.file;
    // Methods, fields and enum values are named by their parent plus one more part.
    const parent = this.#registry.get(symbol.slice(0, Math.max(0, symbol.lastIndexOf('.'))));
    return parent?.file;
  }

  #extensionsOf(typeName: string) {
    return [...this.#registry]
      .filter((desc) => desc.kind === 'extension' && desc.extendee.typeName === typeName)
      .map((desc) => desc as Extract<typeof desc, { kind: 'extension' }>);
  }

  #serializedFile(file: DescFile): Uint8Array {
    let bytes = this.#serialized.get(file);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.#serialized.set(file, bytes);
    }
    return bytes;
  }

  /** The file and every file it imports, as serialized FileDescriptorProtos. */
  #filesAnswer(file: DescFile | undefined, missing: string) {
    if (!file) return errorAnswer(notFoundCode, missing);
    const ordered: DescFile[] = [];
    const visit = (current: DescFile) => {
      if (ordered.includes(current)) return;
      ordered.push(current);
      current.dependencies.forEach(visit);
    };
    visit(file);
    return {
      case: 'fileDescriptorResponse' as const,
      value: { fileDescriptorProto: ordered.map((entry) => this.#serializedFile(entry)) },
    };
  }
}

function errorAnswer(errorCode: number, errorMessage: string) {
  return { case: 'errorResponse' as const, value: { errorCode, errorMessage } };
}

export function createReflectionV1(index: ReflectionIndex): ServiceImpl<typeof ServerReflectionV1> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: index.answer(request.messageRequest) };
      }
    },
  };
}

export function createReflectionV1Alpha(index: ReflectionIndex): ServiceImpl<typeof ServerReflectionV1Alpha> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: index.answer(request.messageRequest) };
      }
    },
  };
}
