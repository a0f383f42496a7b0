// pushd console. The pages work without this file; it makes a campaign's
// progress live (a poll of its progress every second) and shows the
// progress of an audience upload. Plain JavaScript, no build step.
(function () {
  'use strict';

  // live polls the campaign page's progress and updates the page in
  // place: status, counters, bar, rates, chart, and which buttons show.
  function live(section) {
    var url = section.getAttribute('data-progress');
    var busy = false;
    var timer = null;

    function apply(p) {
      var text = p.text || {};
      Object.keys(text).forEach(function (k) {
        document.querySelectorAll('[data-field="' + k + '"]').forEach(function (el) {
          if (el.textContent !== text[k]) { el.textContent = text[k]; }
        });
      });
      var bar = document.getElementById('campaign-progress');
      if (bar) { bar.max = Math.max(p.total, 1); bar.value = p.done; }
      var line = document.getElementById('chart-line');
      if (line) { line.setAttribute('points', p.chart || ''); }
      var status = document.getElementById('campaign-status');
      if (status) { status.className = 'status status-' + p.status; }
      var allowed = {};
      (p.actions || []).forEach(function (a) { allowed[a] = true; });
      allowed.none = !p.actions || p.actions.length === 0;
      document.querySelectorAll('[data-action]').forEach(function (el) {
        el.hidden = !allowed[el.getAttribute('data-action')];
      });
      if (p.final && timer !== null) { clearInterval(timer); timer = null; }
    }

    function poll() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { headers: { 'Accept': 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) {
          if (!r.ok) { throw new Error('progress: ' + r.status); }
          return r.json();
        })
        .then(apply)
        .catch(function () { /* the next poll tries again */ })
        .then(function () { busy = false; });
    }

    timer = setInterval(poll, 1000);
  }

  // fieldError shows msg next to the field named name (or above the form).
  function fieldError(form, name, msg) {
    form.querySelectorAll('.field-error.from-script').forEach(function (el) { el.remove(); });
    var input = name ? form.querySelector('[name="' + name + '"]') : null;
    var p = document.createElement('p');
    p.className = 'field-error from-script';
    p.textContent = msg;
    if (input) {
      p.id = name + '-error-live';
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', p.id);
      input.parentNode.appendChild(p);
      input.focus();
    } else {
      p.setAttribute('role', 'alert');
      form.insertBefore(p, form.firstChild);
    }
  }

  // upload sends the audience form with XMLHttpRequest, to show how much
  // of the file has gone; the server answers in JSON.
  function upload(form) {
    var bar = document.getElementById('upload-progress');
    var status = document.getElementById('upload-status');
    var button = form.querySelector('button[type="submit"]');
    form.addEventListener('submit', function (ev) {
      if (!window.FormData || !window.XMLHttpRequest) { return; }
      ev.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open('POST', form.getAttribute('action'));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', function (e) {
        if (!e.lengthComputable) { return; }
        bar.max = e.total;
        bar.value = e.loaded;
        status.textContent = 'Uploading: ' + Math.floor(e.loaded * 100 / e.total) + '%';
      });
      xhr.upload.addEventListener('load', function () {
        bar.removeAttribute('value');
        status.textContent = 'Uploaded; importing…';
      });
      xhr.addEventListener('load', function () {
        var ans = {};
        try { ans = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 201 && ans.location) {
          window.location.assign(ans.location);
          return;
        }
        bar.hidden = true;
        button.disabled = false;
        status.textContent = '';
        fieldError(form, ans.field || '', ans.error || ('The upload failed: ' + xhr.status + ' ' + xhr.statusText));
      });
      xhr.addEventListener('error', function () {
        bar.hidden = true;
        button.disabled = false;
        status.textContent = '';
        fieldError(form, '', 'The upload failed: the connection was lost.');
      });
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      status.textContent = 'Uploading…';
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('[data-progress]').forEach(live);
    var form = document.getElementById('upload');
    if (form) { upload(form); }
  });
}());
