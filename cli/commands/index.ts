/**
 * The client commands of `sluice`: everything that talks to a running
 * Sluice's admin API, plus the offline `validate`.
 */
import type { Command } from 'commander';
import { registerApplyCommands } from './apply.js';
import { registerAssertCommand } from './assert.js';
import { registerDashboardCommand } from './dashboard.js';
import { registerGetCommands } from './get.js';
import { registerLifecycleCommands } from './lifecycle.js';
import { registerMetricsCommands } from './metrics.js';
import { registerWeightsCommand } from './weights.js';

export function registerClientCommands(program: Command): void {
  registerApplyCommands(program);
  registerGetCommands(program);
  registerLifecycleCommands(program);
  registerWeightsCommand(program);
  registerAssertCommand(program);
  registerMetricsCommands(program);
  registerDashboardCommand(program);
}
