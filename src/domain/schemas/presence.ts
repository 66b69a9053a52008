import { z } from 'zod';
import { alarmNoteProblem, type AlarmAction as AlarmActionShape } from '../presence';

/** An operator's ack or clear as the CLI and client library take it (the device workflow checks the same rules without zod). */

export const AlarmNote = z.string({ error: 'must be a string' }).superRefine((note, ctx) => {
  const problem = alarmNoteProblem(note);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const AlarmAction: z.ZodType<AlarmActionShape> = z.strictObject({ note: AlarmNote.optional() });
