/**
 * Build progress on stderr. On a terminal the current step's latest output
 * line is redrawn in place; elsewhere (CI logs) only step starts and ends
 * are printed, so logs stay short.
 */
import type { Step, StepResult } from '../pipeline/step.js';

export interface ProgressReporter {
  onStepStart(step: Step): void;
  onProgress(step: Step, message: string): void;
  onStepDone(result: StepResult): void;
  onFetch(message: string): void;
}

export function createProgressReporter(stream: NodeJS.WriteStream = process.stderr, quiet = false): ProgressReporter {
  const interactive = stream.isTTY === true && !quiet;
  let lineOpen = false;

  const clearLine = (): void => {
    if (lineOpen) stream.write('\r\x1b[K');
    lineOpen = false;
  };
  const print = (text: string): void => {
    if (quiet) return;
    clearLine();
    stream.write(`${text}\n`);
  };

  return {
    onStepStart: (step) => print(`[${step.id}] running`),
    onProgress(step, message) {
      if (!interactive || message.length === 0) return;
      const width = Math.max(20, (stream.columns ?? 80) - 1);
      clearLine();
      stream.write(`[${step.id}] ${message}`.slice(0, width));
      lineOpen = true;
    },
    onStepDone: (result) => print(`[${result.id}] ${result.status === 'cached' ? 'cached' : 'done'} in ${(result.durationMs / 1000).toFixed(1)} s`),
    onFetch: (message) => print(`[fetch] ${message}`),
  };
}
