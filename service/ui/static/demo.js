// The demo page (/ui): a client of the public API like any other (docs/api.md).
// GET models lists the served models; each image goes to every one of them as
// POST classify (multipart: image, model, invert). URLs are relative to the page.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // model name -> its card
  let current = null; // {blob, filename, description}: what "invert" re-sends
  let run = 0; // the latest classification; answers to an older one are dropped
  let previewUrl = null;

  const percent = (p) => `${(p * 100).toFixed(1)} %`;

  function setStatus(text) {
    $('status').textContent = text;
  }

  function showError(text) {
    const box = $('error');
    box.textContent = text;
    box.hidden = !text;
  }

  // An answer that is not 2xx: the contract's {"error", "detail"} when it is there.
  async function describeFailure(resp) {
    const text = await resp.text();
    try {
      const body = JSON.parse(text);
      if (body && typeof body.detail === 'string') {
        return `The API answered ${resp.status} (${body.error}): ${body.detail}`;
      }
    } catch (err) {
      // not JSON: show the start of the text below
    }
    return `The API answered ${resp.status} ${resp.statusText}: ${text.slice(0, 300)}`;
  }

  // What a request names to reach this version: the bare name for production, else
  // name@alias (candidate, previous) or name@version.
  function referenceOf(model) {
    const aliases = model.aliases || [];
    if (!model.version || aliases.includes('production')) return model.name;
    return `${model.name}@${aliases[0] || model.version}`;
  }

  function buildCard(model) {
    const card = $('card-template').content.firstElementChild.cloneNode(true);
    const reference = referenceOf(model);
    card.dataset.model = reference;
    card.setAttribute('aria-label', `Model ${reference}`);
    card.querySelector('.model-name').textContent = reference;
    const facts = [];
    if (model.version) facts.push(`version ${model.version}`);
    if (Number.isFinite(model.parameters)) {
      facts.push(`${model.parameters.toLocaleString('en')} parameters`);
    }
    if (Number.isFinite(model.test_accuracy)) {
      facts.push(`test accuracy ${(model.test_accuracy * 100).toFixed(2)} %`);
    }
    card.querySelector('.facts').textContent = facts.join(' · ');
    card.querySelector('.bars').setAttribute('aria-label', `Probabilities of ${reference}`);
    return card;
  }

  // The ten rows, in the order the API lists the classes (built on the first answer).
  function barsFor(card, names) {
    const bars = card.querySelector('.bars');
    const have = [...bars.children].map((row) => row.dataset.class);
    if (have.join('\n') === names.join('\n')) return bars;
    bars.replaceChildren();
    for (const name of names) {
      const row = document.createElement('li');
      row.dataset.class = name;
      const label = document.createElement('span');
      label.className = 'label';
      label.textContent = name;
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span');
      fill.className = 'fill';
      bar.append(fill);
      const value = document.createElement('span');
      value.className = 'value';
      row.append(label, bar, value);
      bars.append(row);
    }
    return bars;
  }

  function showAnswer(card, answer, ms) {
    card.dataset.state = 'done';
    card.querySelector('.failure').hidden = true;
    card.querySelector('.top-class').textContent = answer.class_name;
    card.querySelector('.confidence').textContent = `confidence ${percent(answer.confidence)}`;
    card.querySelector('.latency').textContent = `latency ${ms.toFixed(1)} ms (round trip)`;
    const bars = barsFor(card, Object.keys(answer.probabilities));
    for (const row of bars.children) {
      const p = answer.probabilities[row.dataset.class];
      row.querySelector('.fill').style.width = `${Math.min(100, p * 100)}%`;
      row.querySelector('.value').textContent = percent(p);
      row.classList.toggle('top', row.dataset.class === answer.class_name);
    }
  }

  function showFailure(card, message) {
    card.dataset.state = 'error';
    card.querySelector('.top-class').textContent = 'No answer';
    card.querySelector('.confidence').textContent = '';
    card.querySelector('.latency').textContent = '';
    const failure = card.querySelector('.failure');
    failure.textContent = message;
    failure.hidden = false;
    for (const row of card.querySelectorAll('.bars li')) {
      row.querySelector('.fill').style.width = '0';
      row.querySelector('.value').textContent = '–';
      row.classList.remove('top');
    }
  }

  // A fresh <img> each time; one the browser cannot show (not an image) is taken away.
  function showPreview(blob, description) {
    const figure = $('preview');
    figure.querySelector('img')?.remove();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    const img = document.createElement('img');
    img.alt = `The image sent: ${description}`;
    img.addEventListener('error', () => {
      img.remove();
      figure.hidden = true;
    });
    img.src = previewUrl;
    figure.append(img);
    figure.hidden = false;
  }

  async function classifyWith(model, image, invert) {
    const form = new FormData();
    form.append('image', image.blob, image.filename);
    form.append('model', model);
    if (invert) form.append('invert', 'true');
    const start = performance.now();
    const resp = await fetch('classify', { method: 'POST', body: form });
    const body = resp.ok ? await resp.json() : await describeFailure(resp);
    return { ok: resp.ok, body, ms: performance.now() - start };
  }

  // One model after the other, so that each latency is that model's alone.
  async function classify(image) {
    current = image;
    const mine = ++run;
    showPreview(image.blob, image.description);
    showError('');
    if (!cards.size) {
      showError('No served model to ask: the list of models did not load.');
      return;
    }
    const invert = $('invert').checked;
    const what = `${image.description}${invert ? ' (inverted)' : ''}`;
    setStatus(`Classifying ${what}…`);
    for (const card of cards.values()) card.dataset.state = 'busy';
    const failures = new Set();
    for (const [model, card] of cards) {
      let result;
      try {
        result = await classifyWith(model, image, invert);
      } catch (err) {
        result = { ok: false, body: `The service could not be reached (${err.message}).` };
      }
      if (mine !== run) return; // a newer image took over
      if (result.ok) {
        showAnswer(card, result.body, result.ms);
      } else {
        showFailure(card, result.body);
        failures.add(result.body);
      }
    }
    showError([...failures].join('\n'));
    setStatus(
      failures.size
        ? `${what}: not classified.`
        : `${what}: classified by ${cards.size} model${cards.size > 1 ? 's' : ''}.`,
    );
  }

  function classifyFile(file) {
    if (!file) return;
    markExample(null);
    classify({ blob: file, filename: file.name || 'image', description: `“${file.name}”` });
  }

  function markExample(button) {
    for (const b of document.querySelectorAll('.example')) {
      b.setAttribute('aria-pressed', String(b === button));
    }
  }

  async function classifyExample(button) {
    const label = button.querySelector('span').textContent;
    markExample(button);
    try {
      const resp = await fetch(button.dataset.src);
      if (!resp.ok) throw new Error(await describeFailure(resp));
      const name = button.dataset.src.split('/').pop();
      classify({ blob: await resp.blob(), filename: name, description: `the example “${label}”` });
    } catch (err) {
      showError(`The example “${label}” could not be loaded: ${err.message}`);
    }
  }

  function setUpDropZone() {
    const drop = $('drop');
    // A file dropped anywhere else must not replace the page.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (event) => event.preventDefault());
    }
    drop.addEventListener('dragenter', () => drop.classList.add('over'));
    drop.addEventListener('dragleave', (event) => {
      if (!drop.contains(event.relatedTarget)) drop.classList.remove('over');
    });
    drop.addEventListener('drop', (event) => {
      drop.classList.remove('over');
      classifyFile(event.dataTransfer.files[0]);
    });
    $('file').addEventListener('change', (event) => classifyFile(event.target.files[0]));
  }

  function setUpPad() {
    const pad = $('pad');
    const ctx = pad.getContext('2d');
    const clear = () => {
      ctx.fillStyle = '#000';
      ctx.fillRect(0, 0, pad.width, pad.height);
    };
    clear();
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 2.5;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    let drawing = false;
    const at = (event) => {
      const box = pad.getBoundingClientRect();
      return [
        ((event.clientX - box.left) / box.width) * pad.width,
        ((event.clientY - box.top) / box.height) * pad.height,
      ];
    };
    pad.addEventListener('pointerdown', (event) => {
      drawing = true;
      pad.setPointerCapture(event.pointerId);
      const [x, y] = at(event);
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x, y);
      ctx.stroke();
    });
    pad.addEventListener('pointermove', (event) => {
      if (!drawing) return;
      const [x, y] = at(event);
      ctx.lineTo(x, y);
      ctx.stroke();
    });
    const finish = () => {
      if (!drawing) return;
      drawing = false;
      markExample(null);
      pad.toBlob((blob) => {
        if (blob) classify({ blob, filename: 'drawing.png', description: 'your drawing' });
      }, 'image/png');
    };
    pad.addEventListener('pointerup', finish);
    pad.addEventListener('pointercancel', finish);
    $('clear').addEventListener('click', clear);
  }

  async function loadModels() {
    const resp = await fetch('models', { headers: { accept: 'application/json' } });
    if (!resp.ok) throw new Error(await describeFailure(resp));
    const listing = await resp.json();
    const container = $('models');
    container.replaceChildren();
    cards.clear();
    for (const model of listing.models) {
      const card = buildCard(model);
      cards.set(card.dataset.model, card);
      container.append(card);
    }
    const names = [...cards.keys()].join(', ');
    setStatus(`Served models: ${names}. Choose, drop or draw an image.`);
  }

  document.addEventListener('DOMContentLoaded', () => {
    for (const button of document.querySelectorAll('.example')) {
      button.setAttribute('aria-pressed', 'false');
      button.addEventListener('click', () => classifyExample(button));
    }
    setUpDropZone();
    setUpPad();
    $('invert').addEventListener('change', () => {
      if (current) classify(current);
    });
    loadModels().catch((err) => {
      setStatus('The served models could not be listed.');
      showError(err.message);
    });
  });
})();
