// Runs in every test file: folders made with tempDir() go when the file's tests are done.
import { afterAll } from 'vitest';
import { removeTempDirs } from '../helpers/temp-dir.js';

afterAll(removeTempDirs);
