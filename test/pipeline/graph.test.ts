import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { QwamosError } from '../../core/errors.js';
import { orderSteps, runGraph } from '../../pipeline/graph.js';
import type { Step } from '../../pipeline/step.js';

/** Builds a two-step graph: `source` copies a file, `upper` upper-cases it. */
function makeSteps(inputFile: string, setting: string, runs: string[]): Step[] {
  return [
    {
      id: 'source',
      dependsOn: [],
      version: 1,
      inputs: async () => ({ files: { text: inputFile } }),
      run: async ({ outputDir }) => {
        runs.push('source');
        await writeFile(path.join(outputDir, 'text'), await readFile(inputFile));
      },
    },
    {
      id: 'upper',
      dependsOn: ['source'],
      version: 1,
      inputs: async () => ({ config: { setting } }),
      run: async ({ outputDir, dependencies }) => {
        runs.push('upper');
        const text = await readFile(path.join(dependencies.source!, 'text'), 'utf8');
        await writeFile(path.join(outputDir, 'upper'), `${text.toUpperCase()}${setting}`);
      },
    },
  ];
}

async function scratch(): Promise<{ cacheDir: string; inputFile: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qwamos-graph-'));
  const inputFile = path.join(dir, 'input.txt');
  await writeFile(inputFile, 'hello');
  return { cacheDir: path.join(dir, 'cache'), inputFile };
}

describe('runGraph', () => {
  it('reuses every step when nothing changed', async () => {
    const { cacheDir, inputFile } = await scratch();
    const runs: string[] = [];
    await runGraph(makeSteps(inputFile, 'a', runs), { cacheDir });
    const second = await runGraph(makeSteps(inputFile, 'a', runs), { cacheDir });

    expect(runs).toEqual(['source', 'upper']);
    expect(second.map((result) => result.status)).toEqual(['cached', 'cached']);
  });

  it('reruns only the steps downstream of a changed setting', async () => {
    const { cacheDir, inputFile } = await scratch();
    const runs: string[] = [];
    const first = await runGraph(makeSteps(inputFile, 'a', runs), { cacheDir });
    const second = await runGraph(makeSteps(inputFile, 'b', runs), { cacheDir });

    expect(runs).toEqual(['source', 'upper', 'upper']);
    expect(second[0]!.key).toBe(first[0]!.key);
    expect(second[1]!.key).not.toBe(first[1]!.key);
    expect(await readFile(path.join(second[1]!.outputDir, 'upper'), 'utf8')).toBe('HELLOb');
  });

  it('reruns every dependent step when an input file changes', async () => {
    const { cacheDir, inputFile } = await scratch();
    const runs: string[] = [];
    const first = await runGraph(makeSteps(inputFile, 'a', runs), { cacheDir });
    await writeFile(inputFile, 'changed');
    const second = await runGraph(makeSteps(inputFile, 'a', runs), { cacheDir });

    expect(runs).toEqual(['source', 'upper', 'source', 'upper']);
    expect(second[0]!.key).not.toBe(first[0]!.key);
    expect(second[1]!.outputs[0]!.sha256).not.toBe(first[1]!.outputs[0]!.sha256);
  });

  it('keeps the key when an input file is rewritten with the same bytes', async () => {
    const { cacheDir, inputFile } = await scratch();
    const first = await runGraph(makeSteps(inputFile, 'a', []), { cacheDir });
    await writeFile(inputFile, 'hello');
    const second = await runGraph(makeSteps(inputFile, 'a', []), { cacheDir });

    expect(second.map((result) => result.key)).toEqual(first.map((result) => result.key));
  });

  it('records size and SHA-256 of each output', async () => {
    const { cacheDir, inputFile } = await scratch();
    const [source] = await runGraph(makeSteps(inputFile, 'a', []), { cacheDir });

    expect(source!.outputs).toEqual([{ name: 'text', size: 5, sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824' }]);
  });

  it('leaves no cache entry when a step fails', async () => {
    const { cacheDir, inputFile } = await scratch();
    const steps = makeSteps(inputFile, 'a', []);
    steps[1]!.run = async ({ outputDir }) => {
      await writeFile(path.join(outputDir, 'upper'), 'partial');
      throw new QwamosError('COMMAND_FAILED', 'broken step');
    };

    await expect(runGraph(steps, { cacheDir })).rejects.toThrow('broken step');
    const entries = await readdir(path.join(cacheDir, 'steps', 'upper'));
    expect(entries).toEqual([]);
  });

  it('names a missing input file', async () => {
    const { cacheDir } = await scratch();
    await expect(runGraph(makeSteps('/nonexistent/input.txt', 'a', []), { cacheDir })).rejects.toThrow(
      "step 'source': input 'text' not found: /nonexistent/input.txt",
    );
  });

  it('rejects a cycle and an unknown dependency', () => {
    const step = (id: string, dependsOn: string[]): Step => ({ id, dependsOn, version: 1, inputs: async () => ({}), run: async () => {} });

    expect(() => orderSteps([step('a', ['b']), step('b', ['a'])])).toThrow('cycle: a -> b -> a');
    expect(() => orderSteps([step('a', ['missing'])])).toThrow("step 'a' depends on 'missing'");
  });

  it('completes after a build killed with SIGKILL in the middle of a step', async () => {
    const { cacheDir, inputFile } = await scratch();
    const graphModule = path.resolve('dist/pipeline/graph.js');
    const script = `
      import { writeFile } from 'node:fs/promises';
      import path from 'node:path';
      const { runGraph } = await import(${JSON.stringify(graphModule)});
      const slow = process.argv.at(-1) === 'slow';
      await runGraph([{ id: 'big', dependsOn: [], version: 1,
        inputs: async () => ({ files: { text: ${JSON.stringify(inputFile)} } }),
        run: async ({ outputDir }) => {
          await writeFile(path.join(outputDir, 'half'), 'x'.repeat(1000));
          if (slow) { process.stdout.write('started\\n'); await new Promise((r) => setTimeout(r, 60000)); }
          await writeFile(path.join(outputDir, 'done'), 'ok');
        } }], { cacheDir: ${JSON.stringify(cacheDir)} });
      process.stdout.write('finished\\n');`;

    const child = spawn(process.execPath, ['--input-type=module', '-e', script, 'slow']);
    await new Promise<void>((resolve) => child.stdout.on('data', (data: Buffer) => data.toString().includes('started') && resolve()));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));

    const afterKill = await readdir(path.join(cacheDir, 'steps', 'big'));
    expect(afterKill.every((name) => name.includes('.tmp-'))).toBe(true);

    const rerun = spawn(process.execPath, ['--input-type=module', '-e', script, 'fast']);
    const output = await new Promise<string>((resolve) => {
      let text = '';
      rerun.stdout.on('data', (data: Buffer) => (text += data.toString()));
      rerun.on('exit', () => resolve(text));
    });
    expect(output).toContain('finished');

    const entries = await readdir(path.join(cacheDir, 'steps', 'big'));
    expect(entries).toHaveLength(1);
    expect(entries[0]).not.toContain('.tmp-');
    expect((await readdir(path.join(cacheDir, 'steps', 'big', entries[0]!, 'outputs'))).sort()).toEqual(['done', 'half']);
  });
});
