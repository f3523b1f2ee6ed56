// tus-js-client as the ES module the granite guide imports
// (`import { Upload } from 'tus-js-client'`): the page's import map
// (index.html) points that bare name here. The library is the same
// dist/tus.min.js the rest of the page uses (its browser bundle, loaded first
// as the `tus` global), so no bundler is needed and both run the same code.
export const { Upload } = window.tus;
