import { pkgValue } from 'fake-pkg';
import * as math from './math.js';
import { heavy } from './math.js';

function helper() {
  return 1;
}

class Counter {
  constructor() {
    this.value = 1;
  }
}

export function shout(s) {
  return `${s.toUpperCase()}!`;
}

/** A closure capturing a number, a string, an object and bytes, and using imports. */
export function makeClosure(x, label, obj, bytes) {
  const unusedHere = () => label;
  void unusedHere;
  return (extra) =>
    `${label}:${heavy(x, extra)}:${pkgValue(bytes[0])}:${obj.nested.k}:${bytes.length}:${math.heavy(1, 1)}`;
}

export function captureHelper() {
  return () => helper() + 1;
}

export function captureInstance() {
  const counter = new Counter();
  return () => counter.value;
}

export function captureFunctionInObject() {
  const cfg = { handler: () => 1 };
  return () => cfg.handler();
}

export const holder = {
  n: 1,
  make() {
    return () => this.n;
  },
};

export function makeShouter(s) {
  return () => shout(s);
}

export function makeFactorial() {
  const fact = (n) => (n <= 1 ? 1 : n * fact(n - 1));
  return fact;
}

export function makeMapReader(map, tags) {
  return (key) => [map.get(key), [...tags].join(','), Math.max(1, 2)];
}

/** `heavy` here is the parameter, not the import of the same name. */
export function makeShadowing(heavy) {
  return () => heavy * 2;
}
