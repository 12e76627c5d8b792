import type { ExperimentRecord, ExperimentStore } from '../ports.js';

/** The default store: experiments live as long as the process. */
export class MemoryStore implements ExperimentStore {
  readonly #records = new Map<string, ExperimentRecord>();

  async get(name: string): Promise<ExperimentRecord | null> {
    return this.#records.get(name) ?? null;
  }

  async put(record: ExperimentRecord): Promise<void> {
    this.#records.set(record.doc.name, record);
  }

  async list(): Promise<ExperimentRecord[]> {
    return [...this.#records.values()];
  }

  async delete(name: string): Promise<void> {
    this.#records.delete(name);
  }
}
