/**
 * A fastboot device emulator for tests: it serves the fastboot TCP
 * transport on 127.0.0.1 so that the real `fastboot` client (Debian package
 * fastboot 29.0.6) can flash it, and it stores what a phone would store.
 *
 * Transport (AOSP system/core/fastboot/README.md, "TCP Protocol v1"): both
 * sides send the 4-byte handshake "FB01", then every packet in either
 * direction is an 8-byte big-endian length followed by that many bytes.
 * Commands are ASCII; responses start with OKAY, FAIL, DATA or INFO. The
 * host sends download data as one or more packets after the DATA response.
 *
 * The emulator models two modes of a phone:
 * - bootloader: has the physical partitions (boot_a, vbmeta_b, super,
 *   avb_custom_key, ...) and reports `is-userspace: no`;
 * - fastbootd (after `reboot-fastboot`): also knows the logical partitions
 *   inside super (system_a, system_b), resizes them, and answers
 *   `is-userspace: yes`. Its `current-slot` is the slot it booted from, so
 *   `set_active` there changes only the slot of the next boot.
 *
 * Device state (partition bytes, slots, mode) lives in the emulator and
 * survives connections, because every `fastboot` invocation connects anew.
 */
import net from 'node:net';

/** Android sparse image constants (libsparse sparse_format.h); all integers little-endian. */
const SPARSE_MAGIC = 0xed26ff3a;
const CHUNK_RAW = 0xcac1;
const CHUNK_FILL = 0xcac2;
const CHUNK_DONT_CARE = 0xcac3;
const CHUNK_CRC32 = 0xcac4;

const HANDSHAKE = 'FB01';
/** A connection silent for this long is closed, so a stuck client cannot keep a test running. */
const IDLE_TIMEOUT_MS = 15_000;

export type Slot = 'a' | 'b';
export type EmulatorMode = 'bootloader' | 'fastbootd';

export interface FastbootEmulatorOptions {
  /** Value of `getvar product`. */
  product: string;
  serialNumber?: string;
  /** `getvar unlocked`; a locked emulator rejects flash, erase and set_active. Default true. */
  unlocked?: boolean;
  /** 2 for an A/B device, 0 for a device without slots (no slot-count variable). Default 2. */
  slotCount?: 0 | 2;
  /** Slot the device boots from. Default 'a'. */
  currentSlot?: Slot;
  /** `getvar max-download-size` in bytes; larger downloads are rejected. Default 1 MiB. */
  maxDownloadSize?: number;
  /** Physical partitions by full name (boot_a, avb_custom_key, userdata) and their sizes in bytes. */
  partitions: Record<string, number>;
  /** Logical partitions inside super by full name (system_a) and their current sizes in bytes. */
  logicalPartitions?: Record<string, number>;
  /** Size of the physical partition `super`, which bounds the logical partitions. */
  superSize?: number;
  /** Byte that new partitions are filled with. Default 0x00. */
  initialFill?: number;
  /** Respond OKAY to set_active without changing the slot, as a faulty bootloader might. */
  ignoreSetActive?: boolean;
}

/** One `flash:` command the emulator carried out. */
export interface FlashRecord {
  partition: string;
  mode: EmulatorMode;
  /** Bytes downloaded for it. */
  downloadSize: number;
  sparse: boolean;
}

/**
 * How a dropped connection ends: `reset` sends a TCP RST, as a host whose
 * socket vanished; `close` sends a FIN, an orderly close. fastboot 29.0.6
 * reports a reset at once but keeps waiting after a FIN.
 */
export type DropKind = 'reset' | 'close';

interface DownloadInterruption {
  afterBytes: number;
  kind: DropKind;
}

interface ConnectionState {
  socket: net.Socket;
  buffered: Buffer;
  handshakeDone: boolean;
  /** Bytes still expected in the current data phase, or 0 outside one. */
  dataRemaining: number;
  dataParts: Buffer[];
  dataSize: number;
}

export class FastbootEmulator {
  readonly options: FastbootEmulatorOptions & Required<Pick<FastbootEmulatorOptions, 'unlocked' | 'slotCount' | 'currentSlot' | 'maxDownloadSize' | 'initialFill'>>;
  /** Partition contents by full name; logical partitions are included in fastbootd and bootloader alike. */
  readonly storage = new Map<string, Buffer>();
  readonly logical = new Set<string>();
  mode: EmulatorMode = 'bootloader';
  /** Slot the next boot uses; `current-slot` in the bootloader. */
  activeSlot: Slot;
  /** Slot the running fastbootd booted from. */
  bootedSlot: Slot;
  unlocked: boolean;
  /** Every command received, in order, without download data. */
  readonly commands: string[] = [];
  /** Commands and variables this emulator does not implement; it responded FAIL to each. */
  readonly unknown: string[] = [];
  readonly flashes: FlashRecord[] = [];
  /** Sizes of completed downloads. */
  readonly downloads: number[] = [];
  rebootCount = 0;
  connectionCount = 0;
  /** CRC32 chunks seen in sparse downloads; they are skipped without a check. */
  crc32Chunks = 0;
  /**
   * The AVB key flashed to avb_custom_key when `partitions` does not list
   * that name: a bootloader then takes the key but reports no partition size.
   */
  avbCustomKey: Buffer | undefined;

  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private download: Buffer | undefined;
  private interruption: DownloadInterruption | undefined;

  constructor(options: FastbootEmulatorOptions) {
    this.options = {
      unlocked: true,
      slotCount: 2,
      currentSlot: 'a',
      maxDownloadSize: 1024 * 1024,
      initialFill: 0,
      ...options,
    };
    this.activeSlot = this.options.currentSlot;
    this.bootedSlot = this.options.currentSlot;
    this.unlocked = this.options.unlocked;

    for (const [name, size] of Object.entries(options.partitions)) {
      this.storage.set(name, Buffer.alloc(size, this.options.initialFill));
    }
    if (options.superSize !== undefined) this.storage.set('super', Buffer.alloc(0));
    for (const [name, size] of Object.entries(options.logicalPartitions ?? {})) {
      this.storage.set(name, Buffer.alloc(size, this.options.initialFill));
      this.logical.add(name);
    }
  }

  /** Starts listening on 127.0.0.1 on an ephemeral port; returns the `-s` serial for fastboot. */
  async start(): Promise<string> {
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return this.serial;
  }

  get port(): number {
    const address = this.server?.address();
    if (address === null || address === undefined || typeof address === 'string') throw new Error('fastboot emulator: not listening');
    return address.port;
  }

  /** The address fastboot takes with -s: tcp:127.0.0.1:PORT. */
  get serial(): string {
    return `tcp:127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Drops the connection during the next download once `afterBytes` bytes
   * of data have arrived, as a cable pulled mid-transfer. The partial
   * download is discarded, as a device discards an incomplete one.
   */
  interruptNextDownload(afterBytes: number, kind: DropKind = 'reset'): void {
    this.interruption = { afterBytes, kind };
  }

  /** Returns the first `length` bytes stored in a partition. */
  read(partition: string, length?: number): Buffer {
    const stored = this.storage.get(partition);
    if (!stored) throw new Error(`fastboot emulator: no partition ${partition}`);
    return stored.subarray(0, length ?? stored.length);
  }

  /** Overwrites a partition's bytes from offset 0, for setting up a test. */
  write(partition: string, bytes: Uint8Array): void {
    this.read(partition).set(bytes, 0);
  }

  // --- transport ---

  private accept(socket: net.Socket): void {
    this.connectionCount += 1;
    this.sockets.add(socket);
    const state: ConnectionState = { socket, buffered: Buffer.alloc(0), handshakeDone: false, dataRemaining: 0, dataParts: [], dataSize: 0 };
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('data', (chunk) => this.receive(state, chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
  }

  private receive(state: ConnectionState, chunk: Buffer): void {
    state.buffered = state.buffered.length === 0 ? chunk : Buffer.concat([state.buffered, chunk]);

    if (!state.handshakeDone) {
      if (state.buffered.length < HANDSHAKE.length) return;
      const hello = state.buffered.subarray(0, HANDSHAKE.length).toString('latin1');
      if (!/^FB\d\d$/.test(hello)) {
        state.socket.destroy();
        return;
      }
      state.socket.write(HANDSHAKE);
      state.handshakeDone = true;
      state.buffered = state.buffered.subarray(HANDSHAKE.length);
    }

    // Each loop pass consumes one whole packet, so the loop ends when the buffer runs short.
    while (state.buffered.length >= 8 && !state.socket.destroyed) {
      const length = Number(state.buffered.readBigUInt64BE(0));
      if (state.buffered.length < 8 + length) return;
      const payload = state.buffered.subarray(8, 8 + length);
      state.buffered = state.buffered.subarray(8 + length);
      if (state.dataRemaining > 0) {
        this.receiveData(state, payload);
      } else {
        this.handleCommand(state, payload.toString('latin1'));
      }
    }
  }

  private receiveData(state: ConnectionState, payload: Buffer): void {
    if (payload.length > state.dataRemaining) {
      state.socket.destroy();
      return;
    }
    state.dataParts.push(Buffer.from(payload));
    state.dataRemaining -= payload.length;
    const received = state.dataSize - state.dataRemaining;

    const interruption = this.interruption;
    if (interruption && received >= interruption.afterBytes) {
      this.interruption = undefined;
      state.dataRemaining = 0;
      state.dataParts = [];
      if (interruption.kind === 'reset') state.socket.resetAndDestroy();
      else state.socket.destroy();
      return;
    }

    if (state.dataRemaining === 0) {
      this.download = Buffer.concat(state.dataParts);
      state.dataParts = [];
      this.downloads.push(this.download.length);
      this.respond(state, 'OKAY');
    }
  }

  private respond(state: ConnectionState, message: string): void {
    const payload = Buffer.from(message, 'latin1');
    const header = Buffer.alloc(8);
    header.writeBigUInt64BE(BigInt(payload.length));
    state.socket.write(Buffer.concat([header, payload]));
  }

  // --- commands ---

  private handleCommand(state: ConnectionState, command: string): void {
    this.commands.push(command);
    const [verb, ...rest] = command.split(':');
    const argument = rest.join(':');

    switch (verb) {
      case 'getvar': {
        const value = this.variable(argument);
        this.respond(state, value === undefined ? 'FAILunknown variable' : `OKAY${value}`);
        return;
      }
      case 'download':
        this.startDownload(state, argument);
        return;
      case 'flash':
        this.respond(state, this.flash(argument));
        return;
      case 'erase':
        this.respond(state, this.erase(argument));
        return;
      case 'set_active':
        this.respond(state, this.setActive(argument));
        return;
      case 'resize-logical-partition':
        this.respond(state, this.resizeLogical(argument));
        return;
      case 'reboot':
      case 'reboot-bootloader':
      case 'reboot-fastboot':
        this.respond(state, 'OKAY');
        this.reboot(verb);
        state.socket.end();
        return;
      default:
        this.unknown.push(command);
        this.respond(state, 'FAILunknown command');
    }
  }

  private startDownload(state: ConnectionState, hexSize: string): void {
    const size = /^[0-9a-fA-F]{8}$/.test(hexSize) ? Number.parseInt(hexSize, 16) : Number.NaN;
    if (!Number.isSafeInteger(size) || size === 0) {
      this.respond(state, 'FAILinvalid download size');
      return;
    }
    if (size > this.options.maxDownloadSize) {
      this.respond(state, `FAILdata too large (${size} > ${this.options.maxDownloadSize})`);
      return;
    }
    state.dataRemaining = size;
    state.dataSize = size;
    state.dataParts = [];
    this.download = undefined;
    this.respond(state, `DATA${hexSize.toLowerCase()}`);
  }

  private flash(partition: string): string {
    if (!this.unlocked) return 'FAILFlashing is not allowed in Lock State';
    if (!this.download) return 'FAILno image downloaded';
    if (partition === 'avb_custom_key' && !this.storage.has(partition) && this.mode === 'bootloader') {
      this.avbCustomKey = Buffer.from(this.download);
      this.flashes.push({ partition, mode: this.mode, downloadSize: this.download.length, sparse: false });
      return 'OKAY';
    }
    const target = this.partitionFor(partition);
    if (!target) return `FAILpartition ${partition} does not exist`;

    const data = this.download;
    const sparse = data.length >= 4 && data.readUInt32LE(0) === SPARSE_MAGIC;
    const failure = sparse ? applySparseImage(data, target, () => { this.crc32Chunks += 1; }) : applyRawImage(data, target);
    if (failure) return `FAIL${failure}`;
    this.flashes.push({ partition, mode: this.mode, downloadSize: data.length, sparse });
    return 'OKAY';
  }

  private erase(partition: string): string {
    if (!this.unlocked) return 'FAILErasing is not allowed in Lock State';
    const target = this.partitionFor(partition);
    if (!target) return `FAILpartition ${partition} does not exist`;
    // AOSP's README: erase clears the partition to 0xFF bytes.
    target.fill(0xff);
    return 'OKAY';
  }

  private setActive(slot: string): string {
    if (!this.unlocked) return 'FAILSlot change is not allowed in Lock State';
    const name = slot.startsWith('_') ? slot.slice(1) : slot;
    if (this.options.slotCount === 0 || (name !== 'a' && name !== 'b')) return `FAILinvalid slot ${slot}`;
    if (!this.options.ignoreSetActive) this.activeSlot = name;
    return 'OKAY';
  }

  private resizeLogical(argument: string): string {
    if (this.mode !== 'fastbootd') return 'FAILunknown command';
    const [name = '', sizeText = ''] = argument.split(':');
    const size = Number(sizeText);
    if (!this.logical.has(name)) return `FAILlogical partition ${name} does not exist`;
    if (!Number.isSafeInteger(size) || size < 0) return `FAILinvalid size ${sizeText}`;

    const others = [...this.logical].filter((other) => other !== name).reduce((total, other) => total + this.storage.get(other)!.length, 0);
    if (this.options.superSize !== undefined && others + size > this.options.superSize) return 'FAILNot enough space to resize partition';
    const resized = Buffer.alloc(size, this.options.initialFill);
    this.storage.get(name)!.copy(resized, 0, 0, Math.min(size, this.storage.get(name)!.length));
    this.storage.set(name, resized);
    return 'OKAY';
  }

  private reboot(verb: string): void {
    this.rebootCount += 1;
    this.download = undefined;
    this.mode = verb === 'reboot-fastboot' ? 'fastbootd' : 'bootloader';
    this.bootedSlot = this.activeSlot;
  }

  /** Finds a partition visible in the current mode: logical ones only in fastbootd. */
  private partitionFor(name: string): Buffer | undefined {
    if (this.logical.has(name) && this.mode !== 'fastbootd') return undefined;
    if (name === 'super' && this.options.superSize === undefined) return undefined;
    return this.storage.get(name);
  }

  private partitionSize(name: string): number | undefined {
    if (name === 'super') return this.options.superSize;
    return this.partitionFor(name)?.length;
  }

  // --- variables ---

  private variable(name: string): string | undefined {
    const [key, ...rest] = name.split(':');
    const argument = rest.join(':');
    const slotted = this.options.slotCount > 0;

    switch (key) {
      case 'version': return '0.4';
      case 'product': return this.options.product;
      case 'serialno': return this.options.serialNumber ?? `emulator-${this.port}`;
      case 'secure': return 'yes';
      case 'unlocked': return this.unlocked ? 'yes' : 'no';
      case 'max-download-size': return `0x${this.options.maxDownloadSize.toString(16)}`;
      case 'is-userspace': return this.mode === 'fastbootd' ? 'yes' : 'no';
      case 'super-partition-name': return this.options.superSize === undefined ? undefined : 'super';
      case 'slot-count': return slotted ? String(this.options.slotCount) : undefined;
      case 'current-slot':
        if (!slotted) return undefined;
        return this.mode === 'fastbootd' ? this.bootedSlot : this.activeSlot;
      case 'has-slot':
        return this.partitionFor(`${argument}_a`) ? 'yes' : 'no';
      case 'partition-size': {
        const size = this.partitionSize(argument);
        return size === undefined ? undefined : `0x${size.toString(16).padStart(16, '0')}`;
      }
      case 'partition-type':
        return this.partitionSize(argument) === undefined ? undefined : 'raw';
      case 'is-logical':
        if (this.mode !== 'fastbootd') return undefined;
        return this.partitionSize(argument) === undefined ? undefined : (this.logical.has(argument) ? 'yes' : 'no');
      case 'slot-successful':
      case 'slot-unbootable':
        if (!slotted || (argument !== 'a' && argument !== 'b')) return undefined;
        return key === 'slot-successful' ? 'yes' : 'no';
      default:
        this.unknown.push(`getvar:${name}`);
        return undefined;
    }
  }
}

/** Writes a raw image at offset 0; bytes after it keep their old contents. Returns a failure text or undefined. */
function applyRawImage(data: Buffer, target: Buffer): string | undefined {
  if (data.length > target.length) return `image of ${data.length} bytes is larger than the partition (${target.length})`;
  data.copy(target, 0);
  return undefined;
}

/**
 * Decodes a sparse image into the partition as a device does: RAW and FILL
 * chunks write their blocks, DONT_CARE leaves the blocks as they are.
 * CRC32 chunks are counted and skipped without a check; the tests show
 * that neither fastboot 29.0.6 nor our sparse writer sends one.
 */
function applySparseImage(data: Buffer, target: Buffer, onCrc32Chunk: () => void): string | undefined {
  if (data.length < 28) return 'sparse image header is truncated';
  const fileHeaderSize = data.readUInt16LE(8);
  const chunkHeaderSize = data.readUInt16LE(10);
  const blockSize = data.readUInt32LE(12);
  const totalBlocks = data.readUInt32LE(16);
  const totalChunks = data.readUInt32LE(20);
  if (data.readUInt16LE(4) !== 1 || fileHeaderSize < 28 || chunkHeaderSize < 12 || blockSize === 0 || blockSize % 4 !== 0) {
    return 'invalid sparse image header';
  }
  if (totalBlocks * blockSize > target.length) return `sparse image of ${totalBlocks * blockSize} bytes is larger than the partition (${target.length})`;

  // Decode into a copy first, so that a malformed image leaves the partition untouched.
  const result = Buffer.from(target);
  let offset = fileHeaderSize;
  let block = 0;
  for (let index = 0; index < totalChunks; index += 1) {
    if (offset + chunkHeaderSize > data.length) return `sparse chunk ${index} header is truncated`;
    const type = data.readUInt16LE(offset);
    const blocks = data.readUInt32LE(offset + 4);
    const totalSize = data.readUInt32LE(offset + 8);
    const body = offset + chunkHeaderSize;
    if (offset + totalSize > data.length) return `sparse chunk ${index} is truncated`;
    if (type !== CHUNK_CRC32 && block + blocks > totalBlocks) return `sparse chunk ${index} runs past the image`;
    const start = block * blockSize;
    const length = blocks * blockSize;

    switch (type) {
      case CHUNK_RAW:
        if (totalSize - chunkHeaderSize !== length) return `sparse RAW chunk ${index} has the wrong size`;
        data.copy(result, start, body, body + length);
        break;
      case CHUNK_FILL:
        if (totalSize - chunkHeaderSize !== 4) return `sparse FILL chunk ${index} has the wrong size`;
        result.fill(data.subarray(body, body + 4), start, start + length);
        break;
      case CHUNK_DONT_CARE:
        break;
      case CHUNK_CRC32:
        onCrc32Chunk();
        break;
      default:
        return `sparse chunk ${index} has unknown type 0x${type.toString(16)}`;
    }
    if (type !== CHUNK_CRC32) block += blocks;
    offset += totalSize;
  }
  if (block !== totalBlocks) return `sparse image covers ${block} of ${totalBlocks} blocks`;

  result.copy(target);
  return undefined;
}
