# The server image: Node runs the TypeScript sources directly (no build step). The image's
# Node.js is the version package.json pins (devDependencies.node) and .nvmrc names; a test
# keeps the three equal.
FROM node:24.21.0-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY gen ./gen
COPY src ./src
# Embedded PostgreSQL refuses to run as root; deployments use DATABASE_URL anyway.
USER node
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "src/start.js"]
