/**
 * Registers every method of a service whose issue has not landed as an RPC that answers
 * UNIMPLEMENTED, saying which issue brings it (connect-es's own default names no reason).
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { notImplemented } from "./errors.js";

export function registerNotImplemented(router: ConnectRouter, service: DescService, landsWith: string): void {
  const impl: Record<string, (...args: never[]) => unknown> = {};
  for (const m of service.methods) {
    const err = () => notImplemented(`${service.typeName}/${m.name}`, landsWith);
    impl[m.localName] =
      m.methodKind === "unary" || m.methodKind === "client_streaming"
        ? () => Promise.reject(err())
        : // eslint-disable-next-line require-yield
          async function* () {
            throw err();
          };
  }
  router.service(service, impl as unknown as Partial<ServiceImpl<DescService>>);
}
