// Only types: a type-only import of this module must not be staged.
export interface Label {
  text: string;
}
