// Export forms locate() must recognise without importing the module.
export default function namedDefault() {
  return 'default';
}

const local = () => 'renamed';
export { local as renamed };

export const arrow = () => 'arrow';
