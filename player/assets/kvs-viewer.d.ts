// Types of kvs-viewer.js, the <kvs-viewer> element served by kvsrtc (the
// built-in player's /api/, or a player.Handler mounted by your app, or
// kvsrtc serve --api-only).

/** What the API says when it refuses or the player gives up. */
export interface KvsDiagnosis {
  /** Machine-readable cause: no-answer, channel-full, unauthorized,
   * channel-not-allowed, service-unavailable, ... */
  cause: string;
  title: string;
  message: string;
  advice: string;
  retryable?: boolean;
}

export type KvsViewerState =
  | 'idle'
  | 'connecting'
  | 'waiting'
  | 'negotiating'
  | 'playing'
  | 'retrying'
  | 'reconnecting'
  | 'restarting'
  | 'failed'
  | 'closed';

export interface KvsStats {
  channel: string;
  state: KvsViewerState;
  attempt: number;
  /** "640x360", or "-". */
  resolution: string;
  /** Time to first frame, "412 ms", or "-". */
  ttff: string;
  fps?: string;
  bitrate?: string;
  framesDecoded?: number;
  codec?: string;
  rtt?: string;
}

export interface KvsSnapshot {
  channel: string;
  state: KvsViewerState;
  attempt?: number;
  attemptsTotal?: number;
  recoveries?: number;
  ttffMs?: number | null;
  width?: number;
  height?: number;
  framesDecoded?: number;
  clientIds?: string[];
  lastCause?: string;
  diagnosis?: KvsDiagnosis | null;
  status?: string;
  events?: { t: number; what: string; detail?: string }[];
  /** Push-to-talk (the talk attribute). */
  talk?: {
    enabled: boolean;
    /** Why the camera does not take talk-back, or ''. */
    declined: string;
    pressed: boolean;
    /** The microphone is being sent. */
    live: boolean;
    /** The last microphone track's readyState ('live', 'ended'), '' before the first press. */
    trackState: string;
    /** How long the last press sent audio. */
    talkMs: number;
    button: string;
  };
  /** The data channel (the data attribute). */
  data?: {
    enabled: boolean;
    /** Why the camera does not take a data channel, or ''. */
    declined: string;
    open: boolean;
    sent: number;
    received: number;
    console: string;
    status: string;
  };
}

export interface KvsViewerEventMap extends HTMLElementEventMap {
  state: CustomEvent<{ state: KvsViewerState; info: string }>;
  'first-frame': CustomEvent<{ ms: number }>;
  failed: CustomEvent<KvsDiagnosis>;
  stats: CustomEvent<KvsStats>;
  /** The microphone started (live) or stopped being sent. */
  talk: CustomEvent<{ live: boolean }>;
  /** A data channel message from the camera. */
  message: CustomEvent<{ data: string | ArrayBuffer }>;
  /** The camera's answer declined talk-back or the data channel (video goes on). */
  declined: CustomEvent<{ what: 'talk' | 'data'; message: string }>;
}

/**
 * <kvs-viewer channel="front-door" endpoint="/cams/" muted controls stats
 *   token="..." manual answer-timeout="2.5s" max-attempts="5"
 *   late-answer-window="12s" stall-timeout="5s" media-timeout="10s"
 *   ice-restart-grace="2s" talk data>
 *
 * talk: a push-to-talk button (the microphone is asked for only while it
 * is held); data: a data channel and its console. Both are negotiated in
 * the offer and off by default.
 *
 * Theme it with custom properties (--kvs-bg, --kvs-fg, --kvs-muted,
 * --kvs-accent, --kvs-bad, --kvs-font, --kvs-object-fit, --kvs-failure-bg,
 * --kvs-button-bg) and ::part(tile | video | status | failure |
 * failure-title | failure-message | failure-advice | failure-cause | retry |
 * stats | bar | label | unmute | stats-toggle | talk | data-toggle |
 * console | console-log | console-input | notice).
 */
export class KvsViewerElement extends HTMLElement {
  /** The API base URL (the endpoint attribute, else the module's directory). */
  endpoint: string;
  channel: string;
  /** Returns the bearer token for each API request (overrides the token attribute). */
  getToken: (() => string | Promise<string>) | null;
  readonly state: KvsViewerState;
  readonly diagnosis: KvsDiagnosis | null;
  readonly video: HTMLVideoElement | null;
  /** Whether the microphone is being sent (push-to-talk held). */
  readonly talking: boolean;
  /** Starts talking, as the held button does (needs the talk attribute): asks for the microphone. */
  startTalking(): Promise<void>;
  /** Stops talking: detaches and stops the microphone track. */
  stopTalking(): void;
  /** Sends a text message on the data channel (needs the data attribute); queued until it opens. False if it cannot be sent. */
  send(text: string): boolean;
  /** Shows, hides or toggles the data channel console. */
  toggleConsole(show?: boolean): void;
  /** Connects (again) with a fresh connection. */
  connect(): void;
  /** Closes the connection completely (also done when the element leaves the document). */
  close(): void;
  snapshot(): KvsSnapshot;
  addEventListener<K extends keyof KvsViewerEventMap>(type: K, listener: (this: KvsViewerElement, ev: KvsViewerEventMap[K]) => any, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof KvsViewerEventMap>(type: K, listener: (this: KvsViewerElement, ev: KvsViewerEventMap[K]) => any, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

/** An API refusal: the server's diagnosis, the HTTP status (0: unreachable), Retry-After. */
export class ApiError extends Error {
  status: number;
  diagnosis: KvsDiagnosis;
  retryAfterMs: number;
}

/** A Session of the API (see the Go type player.Session). */
export interface KvsSession {
  channel: string;
  channelArn: string;
  clientId: string;
  signalingUrl: string;
  iceServers: { urls: string[]; username?: string; credential?: string }[];
  iceTransportPolicy: 'all' | 'relay';
  expiresAt: string;
  iceExpiresAt: string;
  /** "relay": watch through the server's relay at whep (no client id, no signaling URL). */
  mode?: 'relay';
  /** The relay's WHEP endpoint of the channel (relay mode; auto mode: where to go when the channel is full). */
  whep?: string;
}

/** A client of the API at base (ending in "/"); token returns a bearer token per request. */
export function apiClient(
  base: string,
  token?: () => string | Promise<string>,
): {
  session(channel: string, renew?: string, after?: string): Promise<KvsSession>;
  headers(): Promise<Record<string, string>>;
  diagnose(report: { channel: string; clientId: string; cause: string; stage: string; attempts: number; elapsedMs: number }): Promise<KvsDiagnosis>;
  report(report: { channel: string; clientId: string; event: 'first-frame' | 'attempt-failed' | 'reconnect'; cause?: string; ms?: number }): void;
};

/** Defines the element under another name (kvs-viewer is defined on import). */
export function defineKvsViewer(name?: string): CustomElementConstructor;

declare global {
  interface HTMLElementTagNameMap {
    'kvs-viewer': KvsViewerElement;
  }
}
