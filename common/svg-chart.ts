/**
 * Inline SVG charts for the HTML report (`sluice report --html`) and the
 * admin dashboard (admin/dashboard/): one series per version over the
 * iterations, drawn without JavaScript so the report stays a single static
 * file that prints, and the dashboard's page runs no chart code of its own.
 * Pure string building; every text is HTML-escaped.
 */

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Okabe–Ito colours: distinguishable with the common colour-vision
 * deficiencies (yellow left out: unreadable on white paper). Beyond eight
 * versions the colours repeat with a dash pattern so lines stay distinct.
 */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#8C564B'];
const DASHES = ['6 3', '2 2', '8 3 2 3'];

export interface SeriesStyle {
  readonly colour: string;
  /** An SVG stroke-dasharray, or null for a solid line. */
  readonly dash: string | null;
  readonly width: number;
}

/**
 * The style of the i-th version (0 = the baseline), the same in every chart.
 * Later versions are drawn thinner and on top, so where lines coincide (equal
 * weights, equal samples) every colour still shows.
 */
export function seriesStyle(i: number): SeriesStyle {
  const round = Math.floor(i / PALETTE.length);
  return {
    colour: PALETTE[i % PALETTE.length]!,
    dash: round === 0 ? null : DASHES[(round - 1) % DASHES.length]!,
    width: Math.max(1.25, 3.5 - 1.25 * i),
  };
}

function strokeAttrs(s: SeriesStyle): string {
  return `stroke="${s.colour}" stroke-width="${s.width}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}`;
}

export interface Series extends SeriesStyle {
  /** The version: the path's `data-version`. */
  readonly name: string;
  /** What the legend says. */
  readonly label: string;
  /** One value per entry of `ChartSpec.x`; null leaves a gap. */
  readonly values: readonly (number | null)[];
}

export interface ChartSpec {
  /** Read by screen readers and shown as a tooltip. */
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** The iteration numbers, ascending. At least one. */
  readonly x: readonly number[];
  readonly series: readonly Series[];
  /** The y axis: from 0 to `max`, a labelled grid line every `step`. */
  readonly y: { readonly max: number; readonly step: number; readonly label: (v: number) => string };
  /**
   * `step`: the value at x holds until the next x (weights set by an
   * iteration for the next one), the last one for one more iteration.
   * `line`: points at x joined by straight lines (measurements).
   */
  readonly shape: 'step' | 'line';
}

// Presentation attributes rather than CSS, so that a chart copied out of the page looks the same.
const GRID = '#e3e3e3';
const AXIS = '#666';
/** On the root: the texts inherit it. */
const TEXT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" font-size="11" fill="#333"';

// Geometry, in SVG user units (the SVG scales to the page width).
const WIDTH = 760;
const MARGIN = { left: 64, right: 20, top: 10, bottom: 46 };
const PLOT_HEIGHT = 200;
const LEGEND_ROW = 18;
/** Markers help read a short series (and are the only mark for a single point); on long ones they would be clutter. */
const MAX_MARKED_POINTS = 40;

export function lineChart(c: ChartSpec): string {
  const legend = legendLayout(c.series);
  const top = MARGIN.top + legend.height;
  const plot = { left: MARGIN.left, top, width: WIDTH - MARGIN.left - MARGIN.right, height: PLOT_HEIGHT };
  const height = top + PLOT_HEIGHT + MARGIN.bottom;

  const first = c.x[0]!;
  const last = c.x[c.x.length - 1]!;
  // A step chart shows the last value for one more iteration; a lone point is centred.
  const [x0, x1] = c.shape === 'step' ? [first, last + 1] : first === last ? [first - 1, last + 1] : [first, last];
  const px = (x: number) => round1(plot.left + ((x - x0) / (x1 - x0)) * plot.width);
  const py = (y: number) => round1(plot.top + plot.height * (1 - Math.min(Math.max(y / c.y.max, 0), 1)));

  const out: string[] = [];
  out.push(`<svg class="chart" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-label="${escapeHtml(c.title)}" ${TEXT}>`);
  out.push(`<title>${escapeHtml(c.title)}</title>`);

  // Grid and y ticks. The tick labels are centred on their line, so their y is the value's y.
  for (let v = 0; v <= c.y.max + c.y.step / 1e6; v += c.y.step) {
    const y = py(v);
    out.push(`<line class="grid" x1="${plot.left}" y1="${y}" x2="${plot.left + plot.width}" y2="${y}" stroke="${GRID}"/>`);
    out.push(`<text class="ytick" x="${plot.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeHtml(c.y.label(v))}</text>`);
  }
  const xStep = niceStep(x1 - x0, 10, 1);
  for (let x = Math.ceil(x0 / xStep) * xStep; x <= x1; x += xStep) {
    const at = px(x);
    out.push(`<line class="tick" x1="${at}" y1="${plot.top + plot.height}" x2="${at}" y2="${plot.top + plot.height + 4}" stroke="${AXIS}"/>`);
    out.push(`<text class="xtick" x="${at}" y="${plot.top + plot.height + 16}" text-anchor="middle">${x}</text>`);
  }
  out.push(`<line class="axis" x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.top + plot.height}" stroke="${AXIS}"/>`);
  out.push(`<line class="axis" x1="${plot.left}" y1="${plot.top + plot.height}" x2="${plot.left + plot.width}" y2="${plot.top + plot.height}" stroke="${AXIS}"/>`);
  out.push(`<text class="label" font-size="12" fill="#1a1a1a" x="${plot.left + plot.width / 2}" y="${height - 8}" text-anchor="middle">${escapeHtml(c.xLabel)}</text>`);
  const yMid = plot.top + plot.height / 2;
  out.push(`<text class="label" font-size="12" fill="#1a1a1a" x="14" y="${yMid}" text-anchor="middle" transform="rotate(-90 14 ${yMid})">${escapeHtml(c.yLabel)}</text>`);

  const marked = c.x.length <= MAX_MARKED_POINTS;
  for (const s of c.series) {
    const points = seriesPoints(c, s.values);
    // Only absolute M and L commands, so the points read back plainly.
    const d = points.map((p) => `${p.start ? 'M' : 'L'}${px(p.x)},${py(p.y)}`).join(' ');
    out.push(`<path class="series" data-version="${escapeHtml(s.name)}" d="${d}" fill="none" ${strokeAttrs(s)}><title>${escapeHtml(s.label)}</title></path>`);
    if (c.shape === 'line' && marked) {
      for (const p of points) out.push(`<circle cx="${px(p.x)}" cy="${py(p.y)}" r="${s.width / 2 + 1.5}" fill="${s.colour}"/>`);
    }
  }

  for (const item of legend.items) {
    const s = item.series;
    out.push(
      `<line x1="${item.x}" y1="${item.y}" x2="${item.x + 22}" y2="${item.y}" ${strokeAttrs(s)}/>`,
      `<text class="legend" x="${item.x + 28}" y="${item.y}" dominant-baseline="middle">${escapeHtml(item.label)}</text>`,
    );
  }
  out.push('</svg>');
  return out.join('\n');
}

/**
 * The points of one series: one per known value, two per value for a step
 * (where it starts and where the next begins); `start` after a gap.
 */
function seriesPoints(c: ChartSpec, values: readonly (number | null)[]): Array<{ x: number; y: number; start: boolean }> {
  const points: Array<{ x: number; y: number; start: boolean }> = [];
  values.forEach((y, i) => {
    if (y === null) return;
    const x = c.x[i]!;
    const start = i === 0 || values[i - 1] === null;
    points.push({ x, y, start });
    if (c.shape === 'step') points.push({ x: c.x[i + 1] ?? x + 1, y, start: false });
  });
  return points;
}

interface LegendItem {
  readonly series: Series;
  readonly label: string;
  readonly x: number;
  readonly y: number;
}

/** The legend above the plot, wrapped into rows; text widths are estimated (no layout engine without JS). */
function legendLayout(series: readonly Series[]): { items: LegendItem[]; height: number } {
  const items: LegendItem[] = [];
  const right = WIDTH - MARGIN.right;
  let x = MARGIN.left;
  let row = 0;
  for (const s of series) {
    const label = s.label;
    const width = 28 + label.length * 7 + 18;
    if (x + width > right && x > MARGIN.left) {
      row += 1;
      x = MARGIN.left;
    }
    items.push({ series: s, label, x, y: MARGIN.top + row * LEGEND_ROW + LEGEND_ROW / 2 });
    x += width;
  }
  return { items, height: (row + 1) * LEGEND_ROW + 8 };
}

/** A round step (1, 2 or 5 × 10^k, at least `min`) that cuts `range` into at most `maxTicks` parts. */
export function niceStep(range: number, maxTicks: number, min = 0): number {
  if (!(range > 0)) return Math.max(min, 1);
  const raw = range / maxTicks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  return Math.max(step, min);
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}
