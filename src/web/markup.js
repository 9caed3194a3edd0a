//! A small, safe markdown subset for message text: **bold**, *italic* (or _italic_), `code`,
//! fenced code blocks, > quotes, web links and @mentions. It builds DOM nodes with textContent
//! only (through `h`); user text never reaches innerHTML, and only http(s) and mailto links are
//! made (a `javascript:` "link" stays text).

import { h } from './dom.js';

/** The message `text` as nodes: paragraphs, quotes and code blocks. `me` is highlighted. */
export function richText(text, me) {
  const blocks = [];
  const lines = String(text).split('\n');
  let paragraph = [];
  let quote = [];
  const flushParagraph = () => {
    if (paragraph.length) blocks.push(h('p', {}, inline(paragraph.join('\n'), me)));
    paragraph = [];
  };
  const flushQuote = () => {
    if (quote.length) blocks.push(h('blockquote', {}, inline(quote.join('\n'), me)));
    quote = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('```')) {
      const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
      if (end !== -1) {
        flushParagraph();
        flushQuote();
        blocks.push(h('pre', {}, h('code', { text: lines.slice(i + 1, end).join('\n') })));
        i = end;
        continue;
      }
    }
    if (line.startsWith('>')) {
      flushParagraph();
      quote.push(line.replace(/^> ?/, ''));
      continue;
    }
    flushQuote();
    paragraph.push(line);
  }
  flushParagraph();
  flushQuote();
  return blocks;
}

// `code`, **bold**, *italic* / _italic_ (delimiters at word edges), links, @mentions.
const TOKEN = /(`[^`\n]+`)|(\*\*(?=\S)[\s\S]*?\S\*\*)|((?<![\w*])\*(?=\S)[^*\n]*?\S\*(?![\w*]))|((?<!\w)_(?=\S)[^_\n]*?\S_(?!\w))|(\b(?:https?:\/\/|mailto:)[^\s<>"]+)|((?<![\w@])@[A-Za-z0-9_.-]+)/g;

function inline(text, me) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    const [whole, code, bold, star, under, link, mention] = match;
    let end = match.index + whole.length;
    if (match.index > last) out.push(text.slice(last, match.index));
    if (code) out.push(h('code', { text: code.slice(1, -1) }));
    else if (bold) out.push(h('strong', {}, inline(bold.slice(2, -2), me)));
    else if (star || under) out.push(h('em', {}, inline((star ?? under).slice(1, -1), me)));
    else if (link) {
      // Trailing punctuation ends a sentence, not the address.
      const href = link.replace(/[.,;:!?)\]}'"]+$/, '');
      end = match.index + href.length;
      out.push(safeLink(href));
    } else if (mention) {
      const name = mention.slice(1).replace(/[.-]+$/, '');
      end = match.index + 1 + name.length;
      out.push(h('span', { class: name === me ? 'mention me' : 'mention', text: `@${name}` }));
    }
    last = end;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function safeLink(href) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return href;
  }
  if (!['http:', 'https:', 'mailto:'].includes(url.protocol)) return href;
  return h('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer', text: href });
}
