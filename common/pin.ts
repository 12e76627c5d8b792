/**
 * Pinning synthetic load to a version: the `load` task (control/tasks/load.ts)
 * sends `x-sluice-pin: <token>:<version>`; the proxy (proxy/handle-request.ts)
 * routes such a request to that version when the token is its own, and
 * strips the header before forwarding (proxy/headers.ts). The token keeps
 * clients from choosing versions for themselves.
 */
export const PIN_HEADER = 'x-sluice-pin';

export function pinValue(token: string, version: string): string {
  return `${token}:${version}`;
}
