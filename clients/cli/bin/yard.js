#!/usr/bin/env node
console.log('yard: under construction');
