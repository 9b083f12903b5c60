#!/usr/bin/env node
// Runs the compiled CLI; `npm run build` (run by the set-up script) creates dist/.
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
