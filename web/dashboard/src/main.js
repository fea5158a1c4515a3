// The dashboard at /ui/: a client of the public GraphQL API only.
import './style.css';

import { render } from 'preact';

import { App } from './app.js';
import { html } from './ui.js';

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
