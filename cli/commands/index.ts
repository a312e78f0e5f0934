import type { Command } from '../command.ts';
import { check } from './check.ts';
import { clusterAccept, clusterList, clusterRemove } from './cluster.ts';
import { join } from './join.ts';
import { routes } from './routes.ts';
import { tokenCreate, tokenList, tokenRevoke } from './token.ts';
import { trustRotate, trustStatus } from './trust.ts';

export const commands: readonly Command[] = [
  tokenCreate,
  tokenList,
  tokenRevoke,
  join,
  clusterList,
  clusterAccept,
  clusterRemove,
  trustRotate,
  trustStatus,
  check,
  routes,
];
