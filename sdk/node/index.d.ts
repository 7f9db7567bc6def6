import type { RequestListener, Server } from 'node:http';

export interface ServeOptions {
  /** Serve only the sockets of these names (LISTEN_FDNAMES, e.g. "web-0"). */
  names?: string[];
  /** The group's stopSignal; default SIGTERM. */
  stopSignal?: NodeJS.Signals;
  /** During a drain, how long a kept-alive connection must stay idle before it is closed; default 500. */
  idleGraceMs?: number;
  /** Where to listen when no socket was passed (running without the agent). */
  alone?: { port: number; host?: string };
  /** Called once every connection is closed; default process.exit(0). */
  onDrained?: () => void;
}

export interface Serving {
  servers: Server[];
  /** Drains now, as the stop signal does. */
  drain: () => Promise<void>;
}

export interface Identity {
  group: string;
  workerId: string;
  revision: string;
  codeDir: string;
}

export function serve(target: RequestListener | Server, options?: ServeOptions): Promise<Serving>;
export function notify(state: string, env?: NodeJS.ProcessEnv): Promise<boolean>;
export function listenFds(env?: NodeJS.ProcessEnv, pid?: number): { fd: number; name: string }[];
export function identity(env?: NodeJS.ProcessEnv): Identity;
export const notifyHelpers: { command: string; args: (state: string) => string[] }[];
export const FIRST_FD: number;
export const DEFAULT_IDLE_GRACE_MS: number;
