/**
 * Passphrases for private keys: from the QWAMOS_KEY_PASSPHRASE environment
 * variable, else from a prompt without echo on a terminal. Dev keys use a
 * fixed, published passphrase, so anyone can open them.
 */
import { QwamosError } from '../core/errors.js';

export const PASSPHRASE_ENV = 'QWAMOS_KEY_PASSPHRASE';

/** Passphrase of every dev key. It is public: dev keys protect nothing. */
export const DEV_PASSPHRASE = 'qwamos-dev-keys-are-public';

/** Shortest passphrase accepted for new release keys, in characters. */
export const MIN_RELEASE_PASSPHRASE_LENGTH = 12;

export interface ReadPassphraseOptions {
  /** Prompt a second time and require the same input (for new keys). */
  confirm?: boolean;
  /** Stream the prompt reads from; defaults to process.stdin. */
  input?: NodeJS.ReadStream;
  /** Stream the prompt is written to; defaults to process.stderr. */
  output?: NodeJS.WriteStream;
}

/**
 * Returns the passphrase from QWAMOS_KEY_PASSPHRASE or, when it is unset and
 * both streams are terminals, from a prompt. `purpose` completes the prompt
 * "Passphrase for ...".
 */
export async function readPassphrase(purpose: string, options: ReadPassphraseOptions = {}): Promise<string> {
  const fromEnvironment = process.env[PASSPHRASE_ENV];
  if (fromEnvironment !== undefined) {
    if (fromEnvironment === '') throw new QwamosError('USAGE', `${PASSPHRASE_ENV} is set but empty; set it to the key passphrase or unset it to be prompted`);
    return fromEnvironment;
  }

  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stderr;
  if (!input.isTTY || !output.isTTY) {
    throw new QwamosError('USAGE', `a passphrase is needed for ${purpose}; set ${PASSPHRASE_ENV} or run on a terminal to be prompted`);
  }

  const passphrase = await promptHidden(`Passphrase for ${purpose}: `, input, output);
  if (passphrase === '') throw new QwamosError('USAGE', 'the passphrase is empty; enter a passphrase');
  if (options.confirm) {
    const again = await promptHidden('Repeat the passphrase: ', input, output);
    if (again !== passphrase) throw new QwamosError('USAGE', 'the two passphrases differ; run the command again');
  }
  return passphrase;
}

/** Reads one line from a terminal in raw mode, echoing nothing. Ctrl-C and Ctrl-D cancel. */
async function promptHidden(prompt: string, input: NodeJS.ReadStream, output: NodeJS.WriteStream): Promise<string> {
  output.write(prompt);
  input.setRawMode(true);
  input.resume();

  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (chunk: Buffer): void => {
        for (const character of chunk.toString('utf8')) {
          if (character === '\r' || character === '\n') {
            input.off('data', onData);
            resolve(typed);
            return;
          }
          if (character === '\u0003' || character === '\u0004') {
            input.off('data', onData);
            reject(new QwamosError('USAGE', 'passphrase entry was cancelled'));
            return;
          }
          if (character === '\u007f' || character === '\b') {
            typed = [...typed].slice(0, -1).join('');
          } else if (character >= ' ') {
            typed += character;
          }
        }
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
    output.write('\n');
  }
}
