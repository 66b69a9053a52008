import type { FastifyInstance } from 'fastify';
import { FaultPatch } from '../../faults';
import type { ApiContext } from '../context';
import { parseBody } from '../errors';

/** Fault control for other processes (tests, the dev stack): the current FaultConfig, or a partial update. */
export function registerDevstackFaultRoutes(app: FastifyInstance, { faults }: ApiContext): void {
  app.get('/devstack/faults', () => faults.get());

  app.put('/devstack/faults', (request) => {
    faults.set(parseBody(FaultPatch, request.body ?? {}));
    return faults.get();
  });
}
