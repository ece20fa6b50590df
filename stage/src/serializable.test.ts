import { describe, expect, it } from 'vitest';
import { assertSerializable, decodeValue, encodeValue } from './serializable.js';

describe('assertSerializable', () => {
  it('accepts primitives, plain objects, arrays, Date, bytes, Map and Set', () => {
    const value = {
      n: 1.5,
      big: 2n ** 70n,
      s: 'x',
      b: true,
      nil: null,
      u: undefined,
      date: new Date(1234),
      bytes: new Uint8Array([1, 2, 3]),
      buf: Buffer.from('hi'),
      list: [1, 'two', [3]],
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, { deep: new Set([1]) }],
      ]),
      set: new Set(['x', 'y']),
      bare: Object.assign(Object.create(null) as object, { k: 1 }),
    };
    expect(() => assertSerializable(value, 'argument 0')).not.toThrow();
  });

  it('round-trips Map and Set as themselves, and leaves plain objects plain', () => {
    const value = { map: new Map([['k', new Map([[1, 'one']])]]), set: new Set([1, 2]), obj: { a: 1 } };
    const back = decodeValue(encodeValue(value)) as typeof value;
    expect(back.map).toBeInstanceOf(Map);
    expect(back.map.get('k')).toEqual(new Map([[1, 'one']]));
    expect(back.set).toEqual(new Set([1, 2]));
    expect(back.obj).toEqual({ a: 1 });
    expect(Object.getPrototypeOf(back.obj)).toBe(Object.prototype);
  });

  it('names the path of a function', () => {
    expect(() => assertSerializable({ foo: { bar: () => 1 } }, 'argument 0')).toThrow(
      'argument 0.foo.bar: a function cannot be sent',
    );
  });

  it('names array indexes and Map entries', () => {
    expect(() => assertSerializable([1, [2, Symbol('s')]], 'argument 1')).toThrow(
      'argument 1[1][1]: a symbol cannot be sent',
    );
    expect(() => assertSerializable(new Map([['k', () => 1]]), 'argument 0')).toThrow(
      'argument 0.get("k"): a function cannot be sent',
    );
  });

  it('refuses class instances, naming the class', () => {
    class Point {
      constructor(readonly x: number) {}
    }
    expect(() => assertSerializable({ p: new Point(1) }, 'argument 0')).toThrow(
      'argument 0.p: an instance of class Point cannot be sent',
    );
    expect(() => assertSerializable(new Error('x'), 'argument 0')).toThrow('an instance of class Error');
    expect(() => assertSerializable(Promise.resolve(1), 'argument 0')).toThrow('an instance of class Promise');
  });

  it('refuses classes and symbol keys', () => {
    expect(() => assertSerializable(class Foo {}, 'argument 0')).toThrow('argument 0: a class cannot be sent');
    expect(() => assertSerializable({ [Symbol('k')]: 1 }, 'argument 0')).toThrow('symbol keys');
  });

  it('refuses cycles, but not a value shared twice', () => {
    const a: Record<string, unknown> = { x: 1 };
    a['self'] = { back: a };
    expect(() => assertSerializable(a, 'argument 0')).toThrow('argument 0.self.back: a cyclic reference');
    const shared = { k: 1 };
    expect(() => assertSerializable({ one: shared, two: shared }, 'argument 0')).not.toThrow();
  });
});
