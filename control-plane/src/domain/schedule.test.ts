import { WeftError } from '@weft/common';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETRY_CONFIG,
  INSTANCE_STATES,
  backfillSlots,
  isTerminal,
  nextRetry,
  parseSchedule,
  spreadOffsetMs,
  transition,
  type InstanceEvent,
  type InstanceState,
} from './schedule.js';

const d = (s: string): Date => new Date(s);
const iso = (ds: Date[]): string[] => ds.map((x) => x.toISOString());

/** Runs fn and returns the field of the WeftError it throws. */
function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WeftError);
    return (e as WeftError).field;
  }
  throw new Error('expected a throw');
}

describe('parseSchedule: aliases', () => {
  const cases: [string, string, string][] = [
    ['hourly', '0 * * * *', 'PT1H'],
    ['daily', '0 0 * * *', 'P1D'],
    ['weekly', '0 0 * * MON', 'P1W'],
    ['monthly', '0 0 1 * *', 'P1M'],
    ['yearly', '0 0 1 1 *', 'P1Y'],
    ['annually', '0 0 1 1 *', 'P1Y'],
  ];
  for (const [name, cron, period] of cases) {
    for (const spelling of [name, `@${name}`, name.toUpperCase(), `@${name.toUpperCase()}`]) {
      it(`${spelling} → ${cron}, period and default offset ${period}`, () => {
        const s = parseSchedule(spelling, {});
        expect(s.alias).toBe(name);
        expect(s.cron).toBe(cron);
        expect(s.period).toBe(period);
        expect(s.offset).toBe(period);
        expect(s.timezone).toBe('UTC');
        expect(s.schedule).toBe(spelling);
      });
    }
  }

  it('parameters per alias (Styx formats)', () => {
    expect(parseSchedule('@hourly').parameter(d('2016-01-19T09:00:00Z'))).toBe('2016-01-19T09');
    expect(parseSchedule('@daily').parameter(d('2016-01-19T00:00:00Z'))).toBe('2016-01-19');
    expect(parseSchedule('@weekly').parameter(d('2016-01-18T00:00:00Z'))).toBe('2016-01-18');
    expect(parseSchedule('@monthly').parameter(d('2016-01-01T00:00:00Z'))).toBe('2016-01');
    expect(parseSchedule('@yearly').parameter(d('2016-01-01T00:00:00Z'))).toBe('2016');
    expect(parseSchedule('annually').parameter(d('2016-01-01T00:00:00Z'))).toBe('2016');
  });

  it('README examples: hourly 2016-04-01T14.., weekly on Mondays', () => {
    const h = parseSchedule('hourly');
    expect(h.slotsBetween(d('2016-04-01T14:00:00Z'), d('2016-04-01T16:00:00Z')).map((x) => h.parameter(x))).toEqual([
      '2016-04-01T14',
      '2016-04-01T15',
    ]);
    const w = parseSchedule('weekly');
    expect(w.slotsBetween(d('2016-04-01T00:00:00Z'), d('2016-04-12T00:00:00Z')).map((x) => w.parameter(x))).toEqual([
      '2016-04-04',
      '2016-04-11',
    ]);
  });

  it('default offsets: +1 period', () => {
    expect(parseSchedule('@hourly').dueAt(d('2016-01-19T13:00:00Z')).toISOString()).toBe('2016-01-19T14:00:00.000Z');
    expect(parseSchedule('@daily').dueAt(d('2016-01-19T00:00:00Z')).toISOString()).toBe('2016-01-20T00:00:00.000Z');
    expect(parseSchedule('@weekly').dueAt(d('2016-01-18T00:00:00Z')).toISOString()).toBe('2016-01-25T00:00:00.000Z');
    expect(parseSchedule('@monthly').dueAt(d('2016-01-01T00:00:00Z')).toISOString()).toBe('2016-02-01T00:00:00.000Z');
    expect(parseSchedule('@monthly').dueAt(d('2016-02-01T00:00:00Z')).toISOString()).toBe('2016-03-01T00:00:00.000Z');
    expect(parseSchedule('@yearly').dueAt(d('2016-01-01T00:00:00Z')).toISOString()).toBe('2017-01-01T00:00:00.000Z');
  });
});

describe('parseSchedule: raw cron', () => {
  it('5-field cron: full-timestamp parameter, offset PT0S', () => {
    const s = parseSchedule('11 9 * * *');
    expect(s.alias).toBeUndefined();
    expect(s.period).toBeUndefined();
    expect(s.offset).toBe('PT0S');
    expect(s.cron).toBe('11 9 * * *');
    expect(s.parameter(d('2016-01-19T09:11:00Z'))).toBe('2016-01-19T09:11:00Z');
    expect(s.dueAt(d('2016-01-19T09:11:00Z')).toISOString()).toBe('2016-01-19T09:11:00.000Z');
    expect(s.nextSlot(d('2016-01-19T09:11:00Z')).toISOString()).toBe('2016-01-20T09:11:00.000Z');
  });

  it('a literal "0 * * * *" is "other": timestamp parameter, PT0S', () => {
    const s = parseSchedule('0 * * * *');
    expect(s.offset).toBe('PT0S');
    expect(s.parameter(d('2016-01-19T09:00:00Z'))).toBe('2016-01-19T09:00:00Z');
  });

  it('6-field cron with seconds first', () => {
    const s = parseSchedule('30 */15 * * * *');
    expect(iso(s.slotsBetween(d('2026-01-01T00:00:00Z'), d('2026-01-01T00:31:00Z')))).toEqual([
      '2026-01-01T00:00:30.000Z',
      '2026-01-01T00:15:30.000Z',
      '2026-01-01T00:30:30.000Z',
    ]);
    expect(s.parameter(d('2026-01-01T00:15:30Z'))).toBe('2026-01-01T00:15:30Z');
    expect(s.isAligned(d('2026-01-01T00:15:30Z'))).toBe(true);
    expect(s.isAligned(d('2026-01-01T00:15:00Z'))).toBe(false);
    expect(s.isAligned(d('2026-01-01T00:15:30.001Z'))).toBe(false);
  });

  it('extra whitespace is normalised', () => {
    expect(parseSchedule('  0   0 * * 1 ').cron).toBe('0 0 * * 1');
  });

  it('raw cron in a zone: parameter carries the offset, round trip', () => {
    const s = parseSchedule('15 9 * * *', { timezone: 'Europe/Stockholm' });
    const slot = s.nextSlot(d('2026-01-10T00:00:00Z'));
    expect(slot.toISOString()).toBe('2026-01-10T08:15:00.000Z');
    expect(s.parameter(slot)).toBe('2026-01-10T09:15:00+01:00');
    expect(s.slotOfParameter('2026-01-10T09:15:00+01:00').toISOString()).toBe('2026-01-10T08:15:00.000Z');
    expect(s.parameter(d('2026-07-10T07:15:00Z'))).toBe('2026-07-10T09:15:00+02:00');
  });
});

describe('offsets', () => {
  it('Styx README: @daily with P1DT2H, at 2017-06-30T02 the run for 2017-06-29 is triggered', () => {
    const s = parseSchedule('@daily', { offset: 'P1DT2H' });
    expect(s.offset).toBe('P1DT2H');
    const slot = s.slotOfParameter('2017-06-29');
    expect(slot.toISOString()).toBe('2017-06-29T00:00:00.000Z');
    expect(s.dueAt(slot).toISOString()).toBe('2017-06-30T02:00:00.000Z');
  });

  it('explicit offset overrides the default; negative offsets; zero offset on alias', () => {
    expect(parseSchedule('@hourly', { offset: 'PT30M' }).dueAt(d('2016-01-19T13:00:00Z')).toISOString()).toBe(
      '2016-01-19T13:30:00.000Z',
    );
    expect(parseSchedule('@daily', { offset: '-PT1H' }).dueAt(d('2016-01-19T00:00:00Z')).toISOString()).toBe(
      '2016-01-18T23:00:00.000Z',
    );
    expect(parseSchedule('@daily', { offset: 'PT0S' }).dueAt(d('2016-01-19T00:00:00Z')).toISOString()).toBe(
      '2016-01-19T00:00:00.000Z',
    );
    expect(parseSchedule('5 4 * * *', { offset: 'P1D' }).dueAt(d('2016-01-19T04:05:00Z')).toISOString()).toBe(
      '2016-01-20T04:05:00.000Z',
    );
  });

  it('monthly offset is calendar-aware (Jan 31 + P1M = Feb 29 in a leap year)', () => {
    const s = parseSchedule('0 0 31 * *', { offset: 'P1M' });
    expect(s.dueAt(d('2016-01-31T00:00:00Z')).toISOString()).toBe('2016-02-29T00:00:00.000Z');
  });
});

describe('slotsBetween / nextSlot / isAligned', () => {
  it('[from, to): from inclusive, to exclusive', () => {
    const s = parseSchedule('@daily');
    expect(iso(s.slotsBetween(d('2016-01-01T00:00:00Z'), d('2016-01-03T00:00:00Z')))).toEqual([
      '2016-01-01T00:00:00.000Z',
      '2016-01-02T00:00:00.000Z',
    ]);
    expect(iso(s.slotsBetween(d('2016-01-01T00:00:00.001Z'), d('2016-01-03T00:00:00.001Z')))).toEqual([
      '2016-01-02T00:00:00.000Z',
      '2016-01-03T00:00:00.000Z',
    ]);
    expect(s.slotsBetween(d('2016-01-03T00:00:00Z'), d('2016-01-01T00:00:00Z'))).toEqual([]);
    expect(s.slotsBetween(d('2016-01-01T00:00:00Z'), d('2016-01-01T00:00:00Z'))).toEqual([]);
  });

  it('across month and year boundaries', () => {
    const h = parseSchedule('hourly');
    expect(iso(h.slotsBetween(d('2015-12-31T22:00:00Z'), d('2016-01-01T01:30:00Z')))).toEqual([
      '2015-12-31T22:00:00.000Z',
      '2015-12-31T23:00:00.000Z',
      '2016-01-01T00:00:00.000Z',
      '2016-01-01T01:00:00.000Z',
    ]);
    const m = parseSchedule('@monthly');
    expect(iso(m.slotsBetween(d('2015-11-15T00:00:00Z'), d('2016-03-01T00:00:00Z')))).toEqual([
      '2015-12-01T00:00:00.000Z',
      '2016-01-01T00:00:00.000Z',
      '2016-02-01T00:00:00.000Z',
    ]);
    const dly = parseSchedule('daily');
    expect(iso(dly.slotsBetween(d('2016-02-28T00:00:00Z'), d('2016-03-02T00:00:00Z')))).toEqual([
      '2016-02-28T00:00:00.000Z',
      '2016-02-29T00:00:00.000Z',
      '2016-03-01T00:00:00.000Z',
    ]);
    const y = parseSchedule('@annually');
    expect(iso(y.slotsBetween(d('2014-06-01T00:00:00Z'), d('2017-01-01T00:00:00Z')))).toEqual([
      '2015-01-01T00:00:00.000Z',
      '2016-01-01T00:00:00.000Z',
    ]);
  });

  it('nextSlot is exclusive', () => {
    const s = parseSchedule('@hourly');
    expect(s.nextSlot(d('2016-01-19T09:00:00Z')).toISOString()).toBe('2016-01-19T10:00:00.000Z');
    expect(s.nextSlot(d('2016-01-19T08:59:59.999Z')).toISOString()).toBe('2016-01-19T09:00:00.000Z');
    expect(parseSchedule('@weekly').nextSlot(d('2016-01-18T00:00:00Z')).toISOString()).toBe('2016-01-25T00:00:00.000Z');
  });

  it('isAligned', () => {
    const s = parseSchedule('@weekly');
    expect(s.isAligned(d('2016-01-18T00:00:00Z'))).toBe(true);
    expect(s.isAligned(d('2016-01-19T00:00:00Z'))).toBe(false);
    expect(s.isAligned(d('2016-01-18T00:00:01Z'))).toBe(false);
    expect(s.isAligned(new Date(NaN))).toBe(false);
  });

  it('too many slots is refused', () => {
    const s = parseSchedule('* * * * * *');
    expect(s.slotsBetween(d('2016-01-01T00:00:00Z'), d('2016-01-01T00:00:10Z'), 10)).toHaveLength(10);
    expect(fieldOf(() => s.slotsBetween(d('2016-01-01T00:00:00Z'), d('2016-01-01T00:00:11Z'), 10))).toBe('to');
    expect(() => s.slotsBetween(d('2016-01-01T00:00:00Z'), d('2017-01-01T00:00:00Z'), 10)).toThrow(
      /more than 10 slots/,
    );
  });
});

describe('parameter ↔ slot', () => {
  const cases: [string, string, string][] = [
    ['@hourly', '2016-01-19T09:00:00.000Z', '2016-01-19T09'],
    ['@daily', '2016-01-19T00:00:00.000Z', '2016-01-19'],
    ['@weekly', '2016-01-18T00:00:00.000Z', '2016-01-18'],
    ['@monthly', '2016-01-01T00:00:00.000Z', '2016-01'],
    ['@yearly', '2016-01-01T00:00:00.000Z', '2016'],
    ['*/5 * * * *', '2016-01-19T09:55:00.000Z', '2016-01-19T09:55:00Z'],
    ['7 */5 * * * *', '2016-01-19T09:55:07.000Z', '2016-01-19T09:55:07Z'],
  ];
  for (const [sched, slot, param] of cases) {
    it(`${sched}: ${slot} ↔ ${param}`, () => {
      const s = parseSchedule(sched);
      expect(s.parameter(d(slot))).toBe(param);
      expect(s.slotOfParameter(param).toISOString()).toBe(slot);
    });
  }

  it('round trip over a range of every alias', () => {
    for (const a of ['hourly', 'daily', 'weekly', 'monthly', 'yearly']) {
      const s = parseSchedule(a);
      for (const slot of s.slotsBetween(d('2015-12-01T00:00:00Z'), d('2018-01-10T00:00:00Z')).slice(0, 150)) {
        expect(s.slotOfParameter(s.parameter(slot)).toISOString()).toBe(slot.toISOString());
      }
    }
  });

  it('rejects unparsable or misaligned parameters with field "parameter"', () => {
    expect(fieldOf(() => parseSchedule('@daily').slotOfParameter('2016-1-19'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('@daily').slotOfParameter('yesterday'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('@daily').slotOfParameter('2016-02-30'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('@weekly').slotOfParameter('2016-01-19'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('@hourly').slotOfParameter('2016-01-19'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('@monthly').slotOfParameter('2016-01-01'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('0 * * * *').slotOfParameter('2016-01-19T09:30:00Z'))).toBe('parameter');
    expect(fieldOf(() => parseSchedule('0 * * * *').slotOfParameter('2016-01-19T09'))).toBe('parameter');
  });

  it('parameter of a misaligned instant is refused with field "slot"', () => {
    expect(fieldOf(() => parseSchedule('@daily').parameter(d('2016-01-19T01:00:00Z')))).toBe('slot');
  });
});

describe('time zones and DST (Europe/Stockholm)', () => {
  const tz = 'Europe/Stockholm';

  it('daily slots are local midnights, 23 h apart at spring-forward and 25 h at fall-back', () => {
    const s = parseSchedule('@daily', { timezone: tz });
    expect(s.timezone).toBe(tz);
    const spring = s.slotsBetween(d('2026-03-28T00:00:00Z'), d('2026-03-31T00:00:00Z'));
    expect(iso(spring)).toEqual(['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z', '2026-03-30T22:00:00.000Z']);
    expect(spring[1]!.getTime() - spring[0]!.getTime()).toBe(23 * 3600_000);
    expect(spring.map((x) => s.parameter(x))).toEqual(['2026-03-29', '2026-03-30', '2026-03-31']);
    const fall = s.slotsBetween(d('2026-10-24T00:00:00Z'), d('2026-10-27T00:00:00Z'));
    expect(iso(fall)).toEqual(['2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z', '2026-10-26T23:00:00.000Z']);
    expect(fall[1]!.getTime() - fall[0]!.getTime()).toBe(25 * 3600_000);
    expect(fall.map((x) => s.parameter(x))).toEqual(['2026-10-25', '2026-10-26', '2026-10-27']);
    // default offset P1D is calendar-aware: due at the next local midnight
    expect(s.dueAt(spring[0]!).toISOString()).toBe('2026-03-29T22:00:00.000Z');
    expect(s.dueAt(fall[0]!).toISOString()).toBe('2026-10-25T23:00:00.000Z');
    expect(s.slotOfParameter('2026-03-29').toISOString()).toBe('2026-03-28T23:00:00.000Z');
    expect(s.slotOfParameter('2026-10-25').toISOString()).toBe('2026-10-24T22:00:00.000Z');
  });

  it('hourly skips the missing hour on 2026-03-29 (23 slots that day)', () => {
    const s = parseSchedule('@hourly', { timezone: tz });
    const slots = s.slotsBetween(d('2026-03-28T23:00:00Z'), d('2026-03-29T22:00:00Z'));
    expect(slots).toHaveLength(23);
    expect(slots.slice(0, 4).map((x) => s.parameter(x))).toEqual([
      '2026-03-29T00',
      '2026-03-29T01',
      '2026-03-29T03',
      '2026-03-29T04',
    ]);
    expect(fieldOf(() => s.slotOfParameter('2026-03-29T02'))).toBe('parameter');
  });

  it('hourly fires twice in the repeated hour on 2026-10-25 (25 slots), parameters disambiguated by offset', () => {
    const s = parseSchedule('@hourly', { timezone: tz });
    const slots = s.slotsBetween(d('2026-10-24T22:00:00Z'), d('2026-10-25T23:00:00Z'));
    expect(slots).toHaveLength(25);
    const params = slots.slice(1, 5).map((x) => s.parameter(x));
    expect(params).toEqual(['2026-10-25T01', '2026-10-25T02+02:00', '2026-10-25T02+01:00', '2026-10-25T03']);
    expect(new Set(slots.map((x) => s.parameter(x))).size).toBe(25);
    for (const slot of slots) expect(s.slotOfParameter(s.parameter(slot)).getTime()).toBe(slot.getTime());
    expect(s.slotOfParameter('2026-10-25T02+02:00').toISOString()).toBe('2026-10-25T00:00:00.000Z');
    expect(s.slotOfParameter('2026-10-25T02+01:00').toISOString()).toBe('2026-10-25T01:00:00.000Z');
    expect(fieldOf(() => s.slotOfParameter('2026-10-25T02'))).toBe('parameter');
  });

  it('a fixed time in the skipped hour runs at 03:00 local; in the repeated hour once', () => {
    const s = parseSchedule('30 2 * * *', { timezone: tz });
    expect(iso(s.slotsBetween(d('2026-03-28T12:00:00Z'), d('2026-03-30T12:00:00Z')))).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
    expect(iso(s.slotsBetween(d('2026-10-24T12:00:00Z'), d('2026-10-26T12:00:00Z')))).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
    ]);
    expect(s.parameter(d('2026-10-25T00:30:00Z'))).toBe('2026-10-25T02:30:00+02:00');
  });

  it('weekly and monthly in a zone', () => {
    const w = parseSchedule('weekly', { timezone: tz });
    expect(w.nextSlot(d('2026-03-25T00:00:00Z')).toISOString()).toBe('2026-03-29T22:00:00.000Z');
    expect(w.parameter(d('2026-03-29T22:00:00Z'))).toBe('2026-03-30');
    const m = parseSchedule('monthly', { timezone: 'America/New_York' });
    expect(m.nextSlot(d('2026-01-15T00:00:00Z')).toISOString()).toBe('2026-02-01T05:00:00.000Z');
    expect(m.parameter(d('2026-02-01T05:00:00Z'))).toBe('2026-02');
  });
});

describe('backfillSlots', () => {
  const s = parseSchedule('@daily');
  it('[start, end) in order and reversed', () => {
    expect(iso(backfillSlots(s, d('2016-12-30T00:00:00Z'), d('2017-01-02T00:00:00Z')))).toEqual([
      '2016-12-30T00:00:00.000Z',
      '2016-12-31T00:00:00.000Z',
      '2017-01-01T00:00:00.000Z',
    ]);
    expect(iso(backfillSlots(s, d('2016-12-30T00:00:00Z'), d('2017-01-02T00:00:00Z'), { reverse: true }))).toEqual([
      '2017-01-01T00:00:00.000Z',
      '2016-12-31T00:00:00.000Z',
      '2016-12-30T00:00:00.000Z',
    ]);
  });
  it('misaligned start/end, end <= start, invalid dates name the field', () => {
    expect(fieldOf(() => backfillSlots(s, d('2016-12-30T01:00:00Z'), d('2017-01-02T00:00:00Z')))).toBe('start');
    expect(fieldOf(() => backfillSlots(s, d('2016-12-30T00:00:00Z'), d('2017-01-02T00:00:01Z')))).toBe('end');
    expect(fieldOf(() => backfillSlots(s, d('2017-01-02T00:00:00Z'), d('2017-01-02T00:00:00Z')))).toBe('end');
    expect(fieldOf(() => backfillSlots(s, d('2017-01-03T00:00:00Z'), d('2017-01-02T00:00:00Z')))).toBe('end');
    expect(fieldOf(() => backfillSlots(s, new Date(NaN), d('2017-01-02T00:00:00Z')))).toBe('start');
    expect(fieldOf(() => backfillSlots(s, d('2017-01-02T00:00:00Z'), new Date(NaN)))).toBe('end');
  });
  it('misalignment message names the next slot', () => {
    expect(() => backfillSlots(s, d('2016-12-30T01:00:00Z'), d('2017-01-02T00:00:00Z'))).toThrow(
      /2016-12-30T01:00:00.000Z is not aligned.*next slot: 2016-12-31T00:00:00.000Z/,
    );
  });
});

describe('invalid input names the field', () => {
  it.each([
    ['* * *'],
    ['61 * * * *'],
    ['0 0 0 * * * 2020'],
    ['foo'],
    ['@fortnightly'],
    ['@'],
    [''],
    ['hours'],
    ['0 0 30 2 *'],
  ])('schedule %j', (sched) => {
    expect(fieldOf(() => parseSchedule(sched, {}))).toBe('schedule');
  });
  it.each([['bogus'], ['P'], ['PT'], ['1H'], ['P1X'], ['']])('offset %j', (offset) => {
    expect(fieldOf(() => parseSchedule('@daily', { offset }))).toBe('offset');
  });
  it.each([['Mars/Base'], ['Europe/Stockholmm'], ['']])('timezone %j', (timezone) => {
    expect(fieldOf(() => parseSchedule('@daily', { timezone }))).toBe('timezone');
  });
  it('messages are clear', () => {
    expect(() => parseSchedule('61 * * * *')).toThrow(/schedule: bad cron expression '61 \* \* \* \*'/);
    expect(() => parseSchedule('@daily', { offset: 'bogus' })).toThrow(/offset: 'bogus' is not an ISO-8601 duration/);
    expect(() => parseSchedule('@daily', { timezone: 'Mars/Base' })).toThrow(/timezone: unknown IANA time zone/);
  });
});

describe('nextRetry', () => {
  const base = { tries: 1, consecutiveFailures: 0, cost: 0 };
  it('defaults are Styx values', () => {
    expect({ ...DEFAULT_RETRY_CONFIG, random: undefined }).toEqual({
      missingDependenciesDelayMs: 600_000,
      missingDependenciesCost: 0.1,
      failureCost: 1,
      baseDelayMs: 180_000,
      maxBackoffExponent: 4,
      maxCost: 50,
      random: undefined,
    });
  });
  it('exit 0 → done', () => {
    expect(nextRetry({ ...base, exitCode: 0 })).toEqual({ action: 'done' });
  });
  it('exit 20 → fixed 10 min, cost +0.1, consecutive failures reset', () => {
    expect(nextRetry({ ...base, consecutiveFailures: 3, cost: 2, exitCode: 20 })).toEqual({
      action: 'retry',
      delayMs: 600_000,
      cost: 2.1,
      consecutiveFailures: 0,
    });
    expect(nextRetry({ ...base, exitCode: 20 }, { missingDependenciesDelayMs: 1000 })).toMatchObject({ delayMs: 1000 });
  });
  it('exit 50 → fail, no retry', () => {
    expect(nextRetry({ ...base, exitCode: 50 })).toEqual({
      action: 'fail',
      reason: 'exit code 50: permanent failure, not retried',
    });
  });
  it('other codes and null → cost +1, exponential jittered backoff 3–45 min', () => {
    expect(nextRetry({ ...base, exitCode: 1 }, { random: () => 0 })).toEqual({
      action: 'retry',
      delayMs: 180_000,
      cost: 1,
      consecutiveFailures: 1,
    });
    expect(nextRetry({ ...base, exitCode: null }, { random: () => 0.99 })).toMatchObject({ delayMs: 180_000, cost: 1 });
    // 2nd failure: floor(r * 4) ∈ 0..3
    expect(nextRetry({ ...base, consecutiveFailures: 1, exitCode: 137 }, { random: () => 0.99 })).toMatchObject({
      delayMs: 540_000,
      consecutiveFailures: 2,
    });
    // capped at 2^4: at most 15 × 3 min = 45 min
    expect(nextRetry({ ...base, consecutiveFailures: 9, exitCode: 1 }, { random: () => 0.999999 })).toMatchObject({
      delayMs: 2_700_000,
    });
    expect(nextRetry({ ...base, consecutiveFailures: 9, exitCode: 1 }, { random: () => 1 })).toMatchObject({
      delayMs: 2_700_000,
    });
    expect(nextRetry({ ...base, consecutiveFailures: 9, exitCode: 1 }, { random: () => 0.5 })).toMatchObject({
      delayMs: 8 * 180_000,
    });
  });
  it('jitter stays within [base, base × 15] for many draws', () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let cf = 0; cf < 10; cf++) {
      for (let i = 0; i < 50; i++) {
        const r = nextRetry({ ...base, consecutiveFailures: cf, exitCode: 2 }, { random });
        if (r.action !== 'retry') throw new Error('expected retry');
        expect(r.delayMs).toBeGreaterThanOrEqual(180_000);
        expect(r.delayMs).toBeLessThanOrEqual(180_000 * Math.max(1, 2 ** Math.min(cf + 1, 4) - 1));
        expect(r.delayMs % 180_000).toBe(0);
      }
    }
  });
  it('budget: stops when the cost reaches 50', () => {
    expect(nextRetry({ ...base, cost: 48, exitCode: 1 }, { random: () => 0 })).toMatchObject({
      action: 'retry',
      cost: 49,
    });
    expect(nextRetry({ ...base, cost: 49, exitCode: 1 })).toEqual({
      action: 'fail',
      reason: 'retry budget of 50 exhausted (cost 50, last: exit code 1)',
    });
    expect(nextRetry({ ...base, cost: 49.9, exitCode: 20 })).toEqual({
      action: 'fail',
      reason: 'retry budget of 50 exhausted (cost 50, last: exit code 20)',
    });
    expect(nextRetry({ ...base, cost: 2, exitCode: null }, { maxCost: 3 })).toMatchObject({
      action: 'fail',
      reason: expect.stringContaining('retry budget of 3') as unknown,
    });
  });
  it('about 500 missing-dependency runs fit in the budget', () => {
    let cost = 0;
    let runs = 0;
    for (;;) {
      const r = nextRetry({ ...base, cost, exitCode: 20 });
      runs++;
      if (r.action !== 'retry') break;
      cost = r.cost;
    }
    expect(runs).toBe(500);
    expect(cost).toBe(49.9);
  });
});

describe('instance state machine', () => {
  const ev = {
    triggered: { type: 'triggered' },
    info: { type: 'info', message: 'Resource limit reached for: [r1]' },
    dequeued: { type: 'dequeued' },
    submit: { type: 'submit' },
    submitted: { type: 'submitted' },
    started: { type: 'started' },
    terminated: { type: 'terminated', exitCode: 0 },
    runError: { type: 'runError', message: 'ErrImagePull' },
    success: { type: 'success' },
    retryAfter: { type: 'retryAfter', delayMs: 600_000 },
    stop: { type: 'stop' },
    timeout: { type: 'timeout' },
    halt: { type: 'halt' },
  } satisfies Record<InstanceEvent['type'], InstanceEvent>;

  it('happy path new → done', () => {
    let s: InstanceState = 'new';
    const path: InstanceState[] = [];
    for (const e of [
      ev.triggered,
      ev.info,
      ev.dequeued,
      ev.submit,
      ev.submitted,
      ev.started,
      ev.terminated,
      ev.success,
    ]) {
      s = transition(s, e);
      path.push(s);
    }
    expect(path).toEqual(['queued', 'queued', 'prepare', 'submitting', 'submitted', 'running', 'terminated', 'done']);
  });

  it('legal transitions from the Styx table', () => {
    const legal: [InstanceState, keyof typeof ev, InstanceState][] = [
      ['prepare', 'started', 'running'],
      ['queued', 'runError', 'failed'],
      ['prepare', 'runError', 'failed'],
      ['submitting', 'runError', 'failed'],
      ['submitted', 'runError', 'failed'],
      ['running', 'runError', 'failed'],
      ['terminated', 'retryAfter', 'queued'],
      ['failed', 'retryAfter', 'queued'],
      ['queued', 'retryAfter', 'queued'],
      ['terminated', 'stop', 'error'],
      ['failed', 'stop', 'error'],
    ];
    for (const [from, e, to] of legal) expect(transition(from, ev[e])).toBe(to);
    for (const s of INSTANCE_STATES.filter((x) => !isTerminal(x))) {
      expect(transition(s, ev.timeout)).toBe('failed');
      expect(transition(s, ev.halt)).toBe('error');
    }
  });

  it('illegal transitions throw a clear error', () => {
    expect(() => transition('done', ev.retryAfter)).toThrow(
      "illegal transition: event 'retryAfter' in state 'done' (allowed in: terminated, failed, queued)",
    );
    expect(() => transition('running', ev.success)).toThrow(/event 'success' in state 'running'/);
    expect(() => transition('new', ev.dequeued)).toThrow(/illegal transition/);
    expect(() => transition('queued', ev.triggered)).toThrow(/illegal transition/);
    expect(() => transition('submitted', ev.terminated)).toThrow(/illegal transition/);
    expect(() => transition('running', ev.retryAfter)).toThrow(/illegal transition/);
    expect(() => transition('running', ev.stop)).toThrow(/illegal transition/);
    expect(() => transition('new', ev.runError)).toThrow(/illegal transition/);
    for (const s of ['done', 'error'] as const) {
      for (const e of Object.values(ev)) expect(() => transition(s, e)).toThrow(/illegal transition/);
    }
  });

  it('counts: every (state, event) pair is either legal or throws', () => {
    let legal = 0;
    for (const s of INSTANCE_STATES) {
      for (const e of Object.values(ev)) {
        try {
          transition(s, e);
          legal++;
        } catch {
          /* illegal */
        }
      }
    }
    // 1+1+1+1+1+2+1+5+1+3+2 single-source rules, plus timeout/halt from 8 non-terminal states
    expect(legal).toBe(19 + 16);
  });
});

describe('spreadOffsetMs', () => {
  it('is deterministic and in range', () => {
    expect(spreadOffsetMs('wf-a', 3_600_000)).toBe(spreadOffsetMs('wf-a', 3_600_000));
    expect(spreadOffsetMs('wf-a', 0)).toBe(0);
    expect(spreadOffsetMs('wf-a', -5)).toBe(0);
    expect(spreadOffsetMs('wf-a', 1)).toBe(0);
    expect(fieldOf(() => spreadOffsetMs('wf-a', Infinity))).toBe('maxSpreadMs');
    expect(fieldOf(() => spreadOffsetMs('wf-a', NaN))).toBe('maxSpreadMs');
  });
  it('a thousand hourly workflows get stable, different offsets across the window', () => {
    const window = 3_600_000;
    const offsets = Array.from({ length: 1000 }, (_, i) => spreadOffsetMs(`component/workflow-${i}`, window));
    for (const o of offsets) {
      expect(Number.isInteger(o)).toBe(true);
      expect(o).toBeGreaterThanOrEqual(0);
      expect(o).toBeLessThan(window);
    }
    expect(new Set(offsets).size).toBeGreaterThan(995);
    // roughly uniform: each of 10 buckets has 60–140 of 1000
    const buckets = new Array<number>(10).fill(0);
    for (const o of offsets) buckets[Math.floor(o / (window / 10))]!++;
    for (const b of buckets) expect(b).toBeGreaterThan(60);
    for (const b of buckets) expect(b).toBeLessThan(140);
    expect(offsets).toEqual(Array.from({ length: 1000 }, (_, i) => spreadOffsetMs(`component/workflow-${i}`, window)));
  });
  it('pinned values (hash must not change between releases)', () => {
    expect([spreadOffsetMs('a', 1000), spreadOffsetMs('b', 1000), spreadOffsetMs('', 1000)]).toEqual([103, 510, 668]);
  });
});

describe('firstDueAfter', () => {
  const at = (iso: string) => new Date(iso);
  it('daily with the default +1 day offset starts with the day in progress', () => {
    const s = parseSchedule('@daily');
    // 2017-06-29 runs at 2017-06-30T00:00Z, so at noon on the 29th it is next.
    expect(s.firstDueAfter(at('2017-06-29T12:00:00Z')).toISOString()).toBe('2017-06-29T00:00:00.000Z');
    // Exactly at its due time it is no longer "after now": the next day is.
    expect(s.firstDueAfter(at('2017-06-30T00:00:00Z')).toISOString()).toBe('2017-06-30T00:00:00.000Z');
  });
  it("Styx's example offset P1DT2H", () => {
    const s = parseSchedule('daily', { offset: 'P1DT2H' });
    expect(s.firstDueAfter(at('2017-06-30T01:59:59Z')).toISOString()).toBe('2017-06-29T00:00:00.000Z');
    expect(s.firstDueAfter(at('2017-06-30T02:00:00Z')).toISOString()).toBe('2017-06-30T00:00:00.000Z');
  });
  it('raw cron with no offset is the next slot', () => {
    const s = parseSchedule('*/5 * * * * *');
    expect(s.firstDueAfter(at('2024-01-01T00:00:03.500Z')).toISOString()).toBe('2024-01-01T00:00:05.000Z');
    expect(s.firstDueAfter(at('2024-01-01T00:00:05.000Z')).toISOString()).toBe('2024-01-01T00:00:10.000Z');
  });
  it('negative offsets run before the slot', () => {
    const s = parseSchedule('hourly', { offset: '-PT10M' });
    expect(s.firstDueAfter(at('2024-01-01T10:49:00Z')).toISOString()).toBe('2024-01-01T11:00:00.000Z');
    expect(s.firstDueAfter(at('2024-01-01T10:51:00Z')).toISOString()).toBe('2024-01-01T12:00:00.000Z');
  });
  it('monthly across month lengths', () => {
    const s = parseSchedule('@monthly');
    // February's slot is due on March 1st.
    expect(s.firstDueAfter(at('2024-02-29T23:00:00Z')).toISOString()).toBe('2024-02-01T00:00:00.000Z');
    expect(s.firstDueAfter(at('2024-03-01T00:00:01Z')).toISOString()).toBe('2024-03-01T00:00:00.000Z');
  });
  it('daily in Stockholm across the spring DST change', () => {
    const s = parseSchedule('@daily', { timezone: 'Europe/Stockholm' });
    // 2024-03-31 is 23 hours long in Stockholm; its slot is due at local midnight April 1st (22:00Z).
    expect(s.firstDueAfter(at('2024-03-31T21:59:00Z')).toISOString()).toBe('2024-03-30T23:00:00.000Z');
    expect(s.firstDueAfter(at('2024-03-31T22:00:00Z')).toISOString()).toBe('2024-03-31T22:00:00.000Z');
  });
});
