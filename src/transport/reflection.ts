/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) so that grpcurl and other tools can
 * list, describe and invoke with no .proto at hand.
 *
 * Written here because no npm package serves reflection for connect-es (@grpc/reflection is tied
 * to @grpc/grpc-js's server). It answers from the descriptors protoc-gen-es embeds in gen/, so it
 * can never disagree with what the server actually serves. v1alpha is wire-identical to v1.
 */
import { create, toBinary, type DescFile, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** What reflection knows: every file reachable from the served services, indexed by name and symbol. */
export class DescriptorIndex {
  readonly serviceNames: ReadonlyArray<string>;
  readonly #files = new Map<string, DescFile>();
  readonly #bySymbol = new Map<string, DescFile>();
  /** "extendee type name" → extension field numbers. */
  readonly #extensions = new Map<string, Map<number, DescFile>>();
  readonly #bytes = new Map<DescFile, Uint8Array>();

  /**
   * @param services what list_services reports; their files and imports are served.
   * @param extraFiles further files to serve, e.g. google/rpc/error_details.proto so that
   *   clients can decode the error details in a status.
   */
  constructor(services: ReadonlyArray<DescService>, extraFiles: ReadonlyArray<DescFile> = []) {
    this.serviceNames = services.map((s) => s.typeName).sort();
    for (const s of services) this.#addFile(s.file);
    for (const f of extraFiles) this.#addFile(f);
  }

  #addFile(file: DescFile): void {
    const name = fileName(file);
    if (this.#files.has(name)) return;
    this.#files.set(name, file);
    for (const dep of file.dependencies) this.#addFile(dep);
    for (const e of file.enums) this.#bySymbol.set(e.typeName, file);
    for (const m of file.messages) this.#addMessage(m, file);
    for (const x of file.extensions) this.#addExtension(x.extendee.typeName, x.number, file, x.typeName);
    for (const s of file.services) {
      this.#bySymbol.set(s.typeName, file);
      for (const m of s.methods) this.#bySymbol.set(`${s.typeName}.${m.name}`, file);
    }
  }

  #addMessage(m: DescMessage, file: DescFile): void {
    this.#bySymbol.set(m.typeName, file);
    for (const f of m.fields) this.#bySymbol.set(`${m.typeName}.${f.name}`, file);
    for (const e of m.nestedEnums) this.#bySymbol.set(e.typeName, file);
    for (const n of m.nestedMessages) this.#addMessage(n, file);
    for (const x of m.nestedExtensions) this.#addExtension(x.extendee.typeName, x.number, file, x.typeName);
  }

  #addExtension(extendee: string, number: number, file: DescFile, typeName: string): void {
    this.#bySymbol.set(typeName, file);
    let numbers = this.#extensions.get(extendee);
    if (numbers === undefined) this.#extensions.set(extendee, (numbers = new Map()));
    numbers.set(number, file);
  }

  fileByName(name: string): DescFile | undefined {
    return this.#files.get(name);
  }

  fileBySymbol(symbol: string): DescFile | undefined {
    return this.#bySymbol.get(symbol.replace(/^\./, ""));
  }

  fileByExtension(extendee: string, number: number): DescFile | undefined {
    return this.#extensions.get(extendee)?.get(number);
  }

  /** undefined when the type is unknown; an empty list when it is known but not extended. */
  extensionNumbers(extendee: string): number[] | undefined {
    if (!this.#bySymbol.has(extendee)) return undefined;
    return [...(this.#extensions.get(extendee)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /**
   * The file and its transitive imports, serialized, leaving out files this stream already sent
   * (grpc-go does the same; clients cache what they have received).
   */
  serialized(file: DescFile, alreadySent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile, root: boolean) => {
      const name = fileName(f);
      if (alreadySent.has(name) && !root) return;
      alreadySent.add(name);
      out.push(this.#bytesOf(f));
      for (const d of f.dependencies) visit(d, false);
    };
    visit(file, true);
    return out;
  }

  #bytesOf(file: DescFile): Uint8Array {
    let b = this.#bytes.get(file);
    if (b === undefined) this.#bytes.set(file, (b = toBinary(FileDescriptorProtoSchema, file.proto)));
    return b;
  }
}

const fileName = (f: DescFile): string => f.proto.name;

type ReflectionRequest = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
/** Plain init objects (no $typeName), so one answer can build a v1 or a v1alpha message. */
type ResponseInit = { messageResponse: NonNullable<MessageInitShape<typeof v1.ServerReflectionResponseSchema>["messageResponse"]> };

const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

function answer(index: DescriptorIndex, req: ReflectionRequest, sent: Set<string>): ResponseInit {
  const files = (f: DescFile | undefined, what: string): ResponseInit =>
    f === undefined
      ? notFound(what)
      : { messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.serialized(f, sent) } } };
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        messageResponse: {
          case: "listServicesResponse",
          value: { service: index.serviceNames.map((name) => ({ name })) },
        },
      };
    case "fileByFilename":
      return files(index.fileByName(r.value), `file "${r.value}"`);
    case "fileContainingSymbol":
      return files(index.fileBySymbol(r.value), `symbol "${r.value}"`);
    case "fileContainingExtension":
      return files(
        index.fileByExtension(r.value.containingType, r.value.extensionNumber),
        `extension ${r.value.extensionNumber} of "${r.value.containingType}"`,
      );
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbers(r.value);
      if (numbers === undefined) return notFound(`type "${r.value}"`);
      return {
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: r.value, extensionNumber: numbers },
        },
      };
    }
    default:
      return error(INVALID_ARGUMENT, "the request names no known message_request");
  }
}

const notFound = (what: string): ResponseInit => error(NOT_FOUND, `${what} not found`);

const error = (errorCode: number, errorMessage: string): ResponseInit => ({
  messageResponse: { case: "errorResponse", value: { errorCode, errorMessage } },
});

/**
 * The reflection services. Both answer from the same index with the same plain answer.
 */
export function reflectionServices(index: DescriptorIndex) {
  const v1Impl = {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        yield create(v1.ServerReflectionResponseSchema, { ...answer(index, req, sent), validHost: req.host, originalRequest: req });
      }
    },
  } satisfies ServiceImpl<typeof v1.ServerReflection>;

  const v1alphaImpl = {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const req of requests) {
        const a = answer(index, req, sent);
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: req.host,
          originalRequest: req,
          // Same field numbers and shapes in both packages: re-tag the v1 answer for v1alpha.
          messageResponse: a.messageResponse as NonNullable<MessageInitShape<typeof v1alpha.ServerReflectionResponseSchema>["messageResponse"]>,
        });
      }
    },
  } satisfies ServiceImpl<typeof v1alpha.ServerReflection>;

  return { v1: v1Impl, v1alpha: v1alphaImpl };
}
