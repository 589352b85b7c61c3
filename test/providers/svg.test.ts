import { describe, expect, it } from 'vitest';
import { escapeXml, sceneToSvg } from '../../src/providers/svg.js';
import type { Scene } from '../../src/compose/scene.js';

const scene = (elements: Scene['elements'], background: Scene['background'] = '#FFFFFF'): Scene => ({
  width: 200,
  height: 100,
  target: { width: 200, height: 100, label: 'test' },
  background,
  safeMargin: 10,
  elements,
});

describe('escapeXml', () => {
  it('escapes markup characters and drops characters XML cannot hold', () => {
    expect(escapeXml(`<b>"Tom" & 'Jerry'</b>`)).toBe('&lt;b&gt;&quot;Tom&quot; &amp; &apos;Jerry&apos;&lt;/b&gt;');
    expect(escapeXml('a\u0000b\u0007c\uD800d')).toBe('abcd');
    expect(escapeXml('café 😀')).toBe('café 😀');
  });
});

describe('sceneToSvg', () => {
  it('writes text lines as escaped text, never as markup', () => {
    const svg = sceneToSvg(
      scene([
        {
          kind: 'text',
          id: 'headline',
          lines: ['</text><script>x</script>', 'second'],
          x: 10,
          baseline: 30,
          lineHeight: 20,
          fontSize: 16,
          weight: 700,
          color: '#000000',
          anchor: 'start',
          box: { x: 10, y: 10, w: 100, h: 50 },
        },
      ]),
    );
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;/text&gt;&lt;script&gt;x&lt;/script&gt;');
    expect(svg).toContain('y="50"');
  });

  it('defines each gradient once and refers to it by id', () => {
    const svg = sceneToSvg(
      scene(
        [
          {
            kind: 'rect',
            x: 0,
            y: 0,
            w: 10,
            h: 10,
            fill: { kind: 'linear', from: '#000000', to: '#FFFFFF', direction: 'vertical' },
          },
        ],
        {
          kind: 'linear',
          from: '#111111',
          to: '#222222',
          direction: 'diagonal',
        },
      ),
    );
    expect(svg.match(/<linearGradient /g)).toHaveLength(2);
    expect(svg).toContain('fill="url(#g0)"');
    expect(svg).toContain('fill="url(#g1)"');
  });

  it('rounds coordinates to two decimals so float noise cannot change the bytes', () => {
    const svg = sceneToSvg(scene([{ kind: 'ellipse', cx: 1 / 3, cy: 2.5, rx: 10.004999, ry: 4, fill: '#FF0000' }]));
    expect(svg).toContain('cx="0.33" cy="2.5" rx="10" ry="4"');
  });
});
