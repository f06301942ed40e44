/**
 * The compositor's plugin interface. A plugin is a Wayland client living in this process: the
 * compositor makes a socketpair, keeps one end as a wl_client and hands the other to the plugin.
 */

export interface PluginContext {
  /** A connected Wayland socket. Owned by the plugin from now on (connect with connectToFd, which
   * takes it, or close it). */
  waylandFd: number;
  /** Logs with the plugin's name as prefix. */
  log: (message: string) => void;
  /** Aborted when the compositor stops or drops the plugin's client. */
  signal: AbortSignal;
}

export interface Plugin {
  readonly name: string;
  /** Starts the plugin. A throw or a rejection is logged and the plugin's client destroyed. */
  start(context: PluginContext): void | Promise<void>;
  /** Called on compositor shutdown (after the signal aborts). Errors are logged. */
  stop?(): void | Promise<void>;
}
