/**
 * Reads a serial console transcript line by line and decides whether the
 * boot reached each stage in order, or failed and why.
 */

export interface Marker {
  id: string;
  description: string;
  pattern: RegExp;
}

/** Stages the boot test requires, in the order they must appear. */
export const BOOT_MARKERS: readonly Marker[] = [
  { id: 'kernel', description: 'the kernel booted', pattern: /Booting Linux on physical CPU|Linux version \d/ },
  { id: 'kvm', description: '/dev/kvm present', pattern: /qwamos-init: \/dev\/kvm present/ },
  { id: 'system', description: 'the system image mounted through dm-verity', pattern: /qwamos-init: system image mounted read-only through dm-verity/ },
  { id: 'runtime', description: 'the runtime started', pattern: /qwamos-runtime: started/ },
];

export type FailureKind = 'kernel-panic' | 'verity-error' | 'verification-failed' | 'boot-halted' | 'kvm-missing';

interface FailurePattern {
  kind: FailureKind;
  pattern: RegExp;
}

/**
 * Console lines that end a boot as failed. A dm-verity corruption message
 * is checked before the init's generic halt message so the verdict names
 * the real cause.
 */
const FAILURE_PATTERNS: readonly FailurePattern[] = [
  { kind: 'verity-error', pattern: /device-mapper: verity.*(corrupted|error|failed)/i },
  { kind: 'verification-failed', pattern: /qwamos: verification failed: .*/ },
  { kind: 'kernel-panic', pattern: /Kernel panic - not syncing.*/ },
  { kind: 'kvm-missing', pattern: /qwamos-init: \/dev\/kvm missing/ },
  { kind: 'boot-halted', pattern: /qwamos-init: boot halted: .*/ },
];

export interface MarkerHit {
  id: string;
  description: string;
  /** Milliseconds since QEMU started. */
  atMs: number;
  line: string;
}

export interface ConsoleFailure {
  kind: FailureKind;
  line: string;
  atMs: number;
}

/** Tracks markers in order and the first failure line. */
export class ConsoleWatcher {
  readonly hits: MarkerHit[] = [];
  failure: ConsoleFailure | undefined;
  private readonly lines: string[] = [];

  constructor(private readonly markers: readonly Marker[] = BOOT_MARKERS, private readonly keepLines = 40) {}

  /** Feeds one console line; returns true when the boot has passed or failed. */
  feed(line: string, atMs: number): boolean {
    this.lines.push(line);
    if (this.lines.length > this.keepLines) this.lines.shift();

    const failed = FAILURE_PATTERNS.find((candidate) => candidate.pattern.test(line));
    if (failed && !this.failure) {
      this.failure = { kind: failed.kind, line: line.trim(), atMs };
    }

    const next = this.markers[this.hits.length];
    if (next && next.pattern.test(line)) {
      this.hits.push({ id: next.id, description: next.description, atMs, line: line.trim() });
    }
    return this.failure !== undefined || this.passed;
  }

  get passed(): boolean {
    return this.failure === undefined && this.hits.length === this.markers.length;
  }

  /** The first required marker not seen yet. */
  get missing(): Marker | undefined {
    return this.markers[this.hits.length];
  }

  get lastLines(): string[] {
    return [...this.lines];
  }
}
