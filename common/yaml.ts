/**
 * The one way Sluice turns YAML (or JSON) text into a value: `sluice.yaml`
 * (config/config.ts) and experiment documents (control/spec.ts, the admin API,
 * `sluice validate`). Anything the parser throws — an alias bomb, nesting too
 * deep for the stack — becomes the caller's SluiceError with a message, so a
 * hostile document is a 400 or a clean CLI error, never a 500 or a crash.
 */
import { parseDocument } from 'yaml';
import { type ErrorCode, SluiceError } from './errors.js';
import { plural, yamlDetail } from './validation.js';

/**
 * How many alias dereferences a document may cost. The yaml package counts an
 * alias by the size of what it expands to, so "billion laughs" documents hit
 * this long before they allocate anything large; hand-written anchors
 * (`<<: *defaults`) stay far below it.
 */
export const MAX_YAML_ALIASES = 100;

export function parseYaml(text: string, code: Extract<ErrorCode, 'SLUICE_CONFIG_INVALID' | 'SLUICE_EXPERIMENT_INVALID'>, label: string): unknown {
  try {
    const doc = parseDocument(text);
    if (doc.errors.length > 0) {
      throw new SluiceError(code, `${label} (${plural(doc.errors.length, 'problem')})`, doc.errors.map(yamlDetail));
    }
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new SluiceError(code, label, [{ path: '', message: reason(err) }]);
  }
}

function reason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/alias count/i.test(message)) return `its aliases expand too far (more than ${MAX_YAML_ALIASES} alias uses): refused as a resource exhaustion attack`;
  if (err instanceof RangeError) return 'it is nested too deeply';
  return message;
}
