// A scene: what a composer decides and the renderer draws. Plain JSON, because the engine stores it as the
// recovery point between composing and rendering; the same scene must always render to the same bytes.

/** "#RRGGBB". */
export type Hex = string;

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** A two-stop gradient. Directions, not angles, so no trigonometry can differ between machines. */
export interface LinearGradient {
  kind: 'linear';
  from: Hex;
  to: Hex;
  direction: 'vertical' | 'horizontal' | 'diagonal';
}

export type Paint = Hex | LinearGradient;

interface ShapeStyle {
  fill: Paint | 'none';
  /** 0..1, default 1. */
  opacity?: number;
  stroke?: { color: Hex; width: number };
}

export interface RectShape extends ShapeStyle {
  kind: 'rect';
  x: number;
  y: number;
  w: number;
  h: number;
  /** Corner radius. */
  r?: number;
}

export interface EllipseShape extends ShapeStyle {
  kind: 'ellipse';
  cx: number;
  cy: number;
  rx: number;
  ry: number;
}

export interface PolygonShape extends ShapeStyle {
  kind: 'polygon';
  points: [number, number][];
}

export type Shape = RectShape | EllipseShape | PolygonShape;

/**
 * Shapes turned together by `rotate` degrees about (cx, cy): a product set at an angle. The renderer
 * does the trigonometry, so the scene holds only the angle and every machine writes the same SVG.
 */
export interface GroupElement {
  kind: 'group';
  rotate: number;
  cx: number;
  cy: number;
  shapes: Shape[];
}

/** Lines of text already wrapped by the composer; `box` bounds every glyph, and the rubric checks it. */
export interface TextElement {
  kind: 'text';
  /** Names the text in rubric evidence: "headline", "body", ... */
  id: string;
  lines: string[];
  /** Anchor x of every line (left edge, centre or right edge, per `anchor`). */
  x: number;
  /** Baseline of the first line. */
  baseline: number;
  lineHeight: number;
  fontSize: number;
  weight: 400 | 700;
  color: Hex;
  anchor: 'start' | 'middle' | 'end';
  box: Box;
}

/** The brand wordmark with a small mark beside it. */
export interface LogoElement {
  kind: 'logo';
  text: string;
  box: Box;
  color: Hex;
  markColor: Hex;
  fontSize: number;
  /** Left edge and baseline of the wordmark. */
  textX: number;
  baseline: number;
  /** The mark: a circle of this radius centred at (markCx, markCy). */
  markCx: number;
  markCy: number;
  markR: number;
}

export type SceneElement = Shape | GroupElement | TextElement | LogoElement;

/** The size a channel or aspect ratio asks for, and how to name it; the rubric compares images with it. */
export interface SizeTarget {
  width: number;
  height: number;
  label: string;
}

export interface Scene {
  width: number;
  height: number;
  target: SizeTarget;
  background: Paint;
  /** No text or logo may come closer than this to any edge. */
  safeMargin: number;
  /** Drawn in order, later on top. */
  elements: SceneElement[];
  /**
   * The words the request asked to set, by the id of the text element meant to carry them: the rubric
   * compares them with what was set, so copy that was cut, shrunk or dropped to fit shows.
   */
  copy?: { id: string; text: string }[];
}

export function textElements(scene: Scene): TextElement[] {
  return scene.elements.filter((e): e is TextElement => e.kind === 'text');
}

export function logoElements(scene: Scene): LogoElement[] {
  return scene.elements.filter((e): e is LogoElement => e.kind === 'logo');
}
